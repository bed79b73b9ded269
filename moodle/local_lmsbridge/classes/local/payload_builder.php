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
 * Turns Moodle event data into the events of lmsbridge's wire contract.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\local;

/**
 * Builds outbox rows from event data and contract JSON from outbox rows.
 *
 * No Moodle calls: the observer looks up what an event does not carry (record snapshots,
 * course module, roles) and passes it in $extra, so this class runs under plain PHPUnit.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
final class payload_builder {

    /** @var string Course completed. */
    const COURSE_COMPLETED = '\\core\\event\\course_completed';
    /** @var string Activity completion changed. */
    const MODULE_COMPLETION = '\\core\\event\\course_module_completion_updated';
    /** @var string Enrolment created. */
    const ENROLMENT_CREATED = '\\core\\event\\user_enrolment_created';
    /** @var string Enrolment updated (status or dates). */
    const ENROLMENT_UPDATED = '\\core\\event\\user_enrolment_updated';
    /** @var string Enrolment deleted. */
    const ENROLMENT_DELETED = '\\core\\event\\user_enrolment_deleted';
    /** @var string A grade set or overridden. */
    const USER_GRADED = '\\core\\event\\user_graded';
    /** @var string Activity created (sent for LTI activities only). */
    const MODULE_CREATED = '\\core\\event\\course_module_created';
    /** @var string User deleted. */
    const USER_DELETED = '\\core\\event\\user_deleted';

    /** @var string[] Every event the plugin observes, as named on the wire. */
    const EVENTS = [
        self::COURSE_COMPLETED,
        self::MODULE_COMPLETION,
        self::ENROLMENT_CREATED,
        self::ENROLMENT_UPDATED,
        self::ENROLMENT_DELETED,
        self::USER_GRADED,
        self::MODULE_CREATED,
        self::USER_DELETED,
    ];

    /** @var int Longest feedback sent, in characters: keeps one event far below the request limit. */
    const FEEDBACK_MAX = 4000;

    /** @var int Longest item or activity name sent, in characters (Moodle's own name limit). */
    const NAME_MAX = 1333;

    /**
     * The outbox row for an event, or null when the event is not sent.
     *
     * @param array $data the event's get_data()
     * @param array $extra what the observer looked up: see each event below
     * @return array|null keys name, courseid, userid, actorid, cmid, timecreated, payload (array)
     */
    public static function build(array $data, array $extra): ?array {
        $name = '\\' . ltrim((string)($data['eventname'] ?? ''), '\\');
        $other = is_array($data['other'] ?? null) ? $data['other'] : [];
        $row = [
            'name' => $name,
            'courseid' => (int)($data['courseid'] ?? 0),
            'userid' => (int)($data['relateduserid'] ?? 0),
            // Only a grade keeps who made the change (the grader): nothing else needs it.
            'actorid' => 0,
            'cmid' => null,
            'timecreated' => (int)($data['timecreated'] ?? 0),
        ];
        switch ($name) {
            case self::COURSE_COMPLETED:
                // Extra: timecompleted from the course_completions snapshot.
                $row['payload'] = [
                    'timecompleted' => (int)($extra['timecompleted'] ?? $row['timecreated']),
                ];
                return $row;

            case self::MODULE_COMPLETION:
                // Extra: modname and instance of the course module, the completion snapshot.
                if (empty($extra['modname'])) {
                    // The activity was deleted before the observer ran: nothing to map it to.
                    return null;
                }
                $row['cmid'] = (int)($data['contextinstanceid'] ?? 0);
                $instance = (int)($extra['instance'] ?? 0);
                $payload = [
                    'completionstate' => (int)($extra['completionstate'] ?? $other['completionstate'] ?? 0),
                    'modname' => (string)$extra['modname'],
                    'instance_id' => $instance,
                    'timemodified' => (int)($extra['timemodified'] ?? $row['timecreated']),
                ];
                if ($payload['modname'] === 'lti') {
                    // Moodle's LTI 1.3 resource_link.id is the lti instance id.
                    $payload['lti_resource_link_id'] = (string)$instance;
                }
                $row['payload'] = $payload;
                return $row;

            case self::ENROLMENT_CREATED:
            case self::ENROLMENT_UPDATED:
            case self::ENROLMENT_DELETED:
                // Extra: userenrolment (the user_enrolments row: from the database, or for a
                // deletion from the event itself) and roles (role shortnames in the course).
                $ue = $extra['userenrolment'] ?? ($other['userenrolment'] ?? null);
                if (!is_array($ue)) {
                    // Deleted again before the observer ran; the deletion event follows.
                    return null;
                }
                $roles = array_values(array_unique(array_map('strval', $extra['roles'] ?? [])));
                sort($roles);
                $row['payload'] = [
                    'enrol' => (string)($other['enrol'] ?? $extra['enrol'] ?? ''),
                    'status' => (int)($ue['status'] ?? 0) === 0 ? 0 : 1,
                    'timestart' => (int)($ue['timestart'] ?? 0),
                    'timeend' => (int)($ue['timeend'] ?? 0),
                    'roles' => $roles,
                ];
                return $row;

            case self::USER_GRADED:
                // Extra: grade (the grade_grades row) and item (the grade_items row).
                $grade = is_array($extra['grade'] ?? null) ? $extra['grade'] : [];
                $item = is_array($extra['item'] ?? null) ? $extra['item'] : [];
                $overridden = !empty($grade['overridden']) || !empty($other['overridden']);
                $itemtype = (string)($item['itemtype'] ?? '');
                if (!$overridden && ($itemtype === 'course' || $itemtype === 'category')) {
                    // Totals Moodle recomputes on every grade change: noise unless a teacher
                    // overrode them.
                    return null;
                }
                $finalgrade = array_key_exists('finalgrade', $grade) ? $grade['finalgrade'] : ($other['finalgrade'] ?? null);
                $grademax = $grade['rawgrademax'] ?? ($item['grademax'] ?? null);
                $grader = (int)($grade['usermodified'] ?? 0);
                $payload = [
                    'itemid' => (int)($other['itemid'] ?? $item['id'] ?? 0),
                    'itemtype' => $itemtype,
                    'itemmodule' => self::nullable_string($item['itemmodule'] ?? null),
                    'iteminstance' => isset($item['iteminstance']) ? (int)$item['iteminstance'] : null,
                    'itemname' => self::clip(self::nullable_string($item['itemname'] ?? null), self::NAME_MAX),
                    'finalgrade' => $finalgrade === null ? null : (float)$finalgrade,
                    'rawgrademax' => $grademax === null ? null : (float)$grademax,
                    'overridden' => $overridden,
                    'grader_id' => $grader > 0 ? $grader : null,
                ];
                $feedback = self::nullable_string($grade['feedback'] ?? null);
                if ($feedback !== null && $feedback !== '') {
                    $payload['feedback'] = self::clip($feedback, self::FEEDBACK_MAX);
                }
                $row['actorid'] = $grader;
                $row['payload'] = $payload;
                return $row;

            case self::MODULE_CREATED:
                if (($other['modulename'] ?? '') !== 'lti') {
                    return null;
                }
                $row['cmid'] = (int)($data['objectid'] ?? 0);
                $row['payload'] = [
                    'modname' => 'lti',
                    'instance_id' => (int)($other['instanceid'] ?? 0),
                    'name' => self::clip((string)($other['name'] ?? ''), self::NAME_MAX),
                ];
                return $row;

            case self::USER_DELETED:
                // The deleted user is the event's object; userid is whoever deleted them.
                $row['userid'] = (int)($data['objectid'] ?? 0);
                $row['courseid'] = 0;
                $row['payload'] = [];
                return $row;

            default:
                return null;
        }
    }

    /**
     * The payload column's text: always a JSON object, also when empty.
     *
     * @param array $payload
     * @return string
     */
    public static function encode_payload(array $payload): string {
        return json_encode((object)$payload, self::JSON_FLAGS);
    }

    /** @var int How every JSON text of the plugin is encoded. */
    const JSON_FLAGS = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION
        | JSON_THROW_ON_ERROR | JSON_INVALID_UTF8_SUBSTITUTE;

    /**
     * One event of the request body, from an outbox row.
     *
     * @param object|array $row outbox row: id, eventid, name, courseid, userid, cmid, payload, timecreated
     * @return string JSON
     */
    public static function event_json($row): string {
        $row = (array)$row;
        $payload = json_decode((string)$row['payload'], false);
        if (!is_object($payload)) {
            $payload = new \stdClass();
        }
        $event = [
            'id' => (string)$row['eventid'],
            'seq' => (int)$row['id'],
            'name' => (string)$row['name'],
            'occurred_at' => (int)$row['timecreated'],
            'course_id' => self::id_or_null($row['courseid'] ?? null),
            'user_id' => self::id_or_null($row['userid'] ?? null),
            'cm_id' => self::id_or_null($row['cmid'] ?? null),
            'payload' => $payload,
        ];
        return json_encode($event, self::JSON_FLAGS);
    }

    /**
     * The request body up to the events array's opening bracket.
     *
     * @param string $siteurl Moodle's wwwroot
     * @param int $pluginversion this plugin's version.php version
     * @param string $moodlerelease Moodle's release string
     * @return string
     */
    public static function envelope_prefix(string $siteurl, int $pluginversion, string $moodlerelease): string {
        $json = json_encode([
            'site_url' => $siteurl,
            'plugin_version' => $pluginversion,
            'moodle_release' => self::release_number($moodlerelease),
            'events' => [],
        ], self::JSON_FLAGS);
        // Ends in "[]}": the events are spliced in between.
        return substr($json, 0, -2);
    }

    /**
     * "4.5.1+ (Build: 20250101)" -> "4.5.1+".
     *
     * @param string $release $CFG->release
     * @return string
     */
    public static function release_number(string $release): string {
        $release = trim($release);
        $space = strpos($release, ' ');
        return $space === false ? $release : substr($release, 0, $space);
    }

    /**
     * Removes the grader from a user_graded payload (privacy deletion for the grader).
     *
     * @param string $payload payload column text
     * @return string
     */
    public static function without_grader(string $payload): string {
        $decoded = json_decode($payload, true);
        if (!is_array($decoded)) {
            return $payload;
        }
        if (array_key_exists('grader_id', $decoded)) {
            $decoded['grader_id'] = null;
        }
        return self::encode_payload($decoded);
    }

    /**
     * Positive ids as ints, anything else as null.
     *
     * @param mixed $value
     * @return int|null
     */
    private static function id_or_null($value): ?int {
        $id = (int)$value;
        return $id > 0 ? $id : null;
    }

    /**
     * Strings stay strings, null stays null.
     *
     * @param mixed $value
     * @return string|null
     */
    private static function nullable_string($value): ?string {
        return $value === null ? null : (string)$value;
    }

    /**
     * Shortens a string to at most $max characters.
     *
     * @param string|null $text
     * @param int $max
     * @return string|null
     */
    private static function clip(?string $text, int $max): ?string {
        if ($text === null || mb_strlen($text, 'UTF-8') <= $max) {
            return $text;
        }
        return mb_substr($text, 0, $max, 'UTF-8');
    }
}
