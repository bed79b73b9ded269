<?php
// This file is part of Moodle - https://moodle.org/
//
// Moodle is free software: you can redistribute it and/or modify
// it under the terms of the GNU General Public License as published by
// the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version.
//
// Moodle is distributed in the hope that it will be useful,
// but WITHOUT ANY WARRANTY; without even the implied warranty of
// MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
// GNU General Public License for more details.
//
// You should have received a copy of the GNU General Public License
// along with Moodle.  If not, see <https://www.gnu.org/licenses/>.

/**
 * The outbox table.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\local;

/**
 * The outbox in Moodle's database: the observers add rows, the send task reads and updates them.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class db_outbox implements outbox {

    /** @var string */
    const TABLE = 'local_lmsbridge_outbox';

    /** @var string */
    const COUNTERS = 'local_lmsbridge_counter';

    /**
     * Pending rows whose next attempt is due, oldest first.
     *
     * @param int $now
     * @param int $limit
     * @return object[]
     */
    public function due(int $now, int $limit): array {
        global $DB;
        return array_values($DB->get_records_select(self::TABLE, 'status = :status AND nextattempt <= :now',
            ['status' => self::STATUS_PENDING, 'now' => $now], 'id ASC',
            'id, eventid, name, courseid, userid, cmid, payload, timecreated, attempts', 0, $limit));
    }

    /**
     * Deletes delivered rows.
     *
     * @param int[] $ids
     */
    public function delete(array $ids): void {
        global $DB;
        if (!empty($ids)) {
            $DB->delete_records_list(self::TABLE, 'id', $ids);
        }
    }

    /**
     * Gives a row up.
     *
     * @param int $id
     * @param int $attempts
     * @param string $error
     */
    public function fail(int $id, int $attempts, string $error): void {
        global $DB;
        $DB->update_record(self::TABLE, (object)[
            'id' => $id,
            'status' => self::STATUS_FAILED,
            'attempts' => $attempts,
            'lasterror' => $error,
        ]);
    }

    /**
     * Schedules a row's next attempt.
     *
     * @param int $id
     * @param int $attempts
     * @param int $nextattempt
     * @param string $error
     */
    public function retry(int $id, int $attempts, int $nextattempt, string $error): void {
        global $DB;
        $DB->update_record(self::TABLE, (object)[
            'id' => $id,
            'attempts' => $attempts,
            'nextattempt' => $nextattempt,
            'lasterror' => $error,
        ]);
    }

    /**
     * Adds an event built by payload_builder::build, within the outbox limit.
     *
     * @param array $built
     * @param int $cap the outbox limit, 0 for none
     * @return bool false when the outbox was full of pending rows and the event was refused
     */
    public static function enqueue(array $built, int $cap): bool {
        global $DB;
        if ($cap > 0) {
            $total = $DB->count_records(self::TABLE);
            if ($total >= $cap) {
                $failed = $DB->count_records(self::TABLE, ['status' => self::STATUS_FAILED]);
                $plan = outbox_cap::plan($total, $failed, $cap);
                if ($plan['remove'] > 0) {
                    $oldest = $DB->get_records(self::TABLE, ['status' => self::STATUS_FAILED], 'id ASC', 'id', 0,
                        $plan['remove']);
                    $DB->delete_records_list(self::TABLE, 'id', array_keys($oldest));
                }
                if (!$plan['accept']) {
                    self::count_refused($built['name']);
                    return false;
                }
            }
        }
        $DB->insert_record(self::TABLE, (object)[
            'eventid' => uuid::v4(),
            'name' => $built['name'],
            'courseid' => $built['courseid'],
            'userid' => $built['userid'],
            'actorid' => $built['actorid'],
            'cmid' => $built['cmid'],
            'payload' => payload_builder::encode_payload($built['payload']),
            'timecreated' => $built['timecreated'],
            'attempts' => 0,
            'nextattempt' => 0,
            'lasterror' => null,
            'status' => self::STATUS_PENDING,
        ]);
        return true;
    }

    /**
     * Counts and logs an event refused by a full outbox.
     *
     * A counter row rather than set_config: a burst of refusals must not rewrite and purge the
     * site configuration once per event.
     *
     * @param string $name the event refused
     */
    private static function count_refused(string $name): void {
        global $DB;
        $now = time();
        if (!$DB->record_exists(self::COUNTERS, ['name' => 'refused'])) {
            $DB->insert_record(self::COUNTERS, (object)['name' => 'refused', 'value' => 0, 'timemodified' => 0]);
        }
        $DB->execute('UPDATE {' . self::COUNTERS . '} SET value = value + 1, timemodified = :now WHERE name = :name',
            ['now' => $now, 'name' => 'refused']);
        debugging('local_lmsbridge: the outbox is full of events waiting to be sent; refused ' . $name
            . '. See Site administration > Plugins > Local plugins > lmsbridge > Event delivery status.', DEBUG_NORMAL);
    }

    /**
     * The refused-events counter.
     *
     * @return object|null value and timemodified
     */
    public static function refused(): ?object {
        global $DB;
        $row = $DB->get_record(self::COUNTERS, ['name' => 'refused'], 'value, timemodified');
        return $row ?: null;
    }
}
