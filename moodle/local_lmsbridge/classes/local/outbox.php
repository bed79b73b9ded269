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
 * Where the sender reads and writes outbox rows.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\local;

/**
 * The outbox as the sender sees it: the database table inside Moodle, memory in tests.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
interface outbox {

    /** @var int Waiting to be sent (again). */
    const STATUS_PENDING = 0;

    /** @var int Given up: rejected by lmsbridge, or failing for too long. Kept for the admin. */
    const STATUS_FAILED = 1;

    /**
     * Pending rows whose next attempt is due, oldest first.
     *
     * @param int $now unix seconds
     * @param int $limit most rows
     * @return object[] rows with id, eventid, name, courseid, userid, cmid, payload, timecreated, attempts
     */
    public function due(int $now, int $limit): array;

    /**
     * Deletes delivered rows.
     *
     * @param int[] $ids row ids
     */
    public function delete(array $ids): void;

    /**
     * Gives a row up.
     *
     * @param int $id row id
     * @param int $attempts attempts made
     * @param string $error why
     */
    public function fail(int $id, int $attempts, string $error): void;

    /**
     * Schedules a row's next attempt.
     *
     * @param int $id row id
     * @param int $attempts attempts made
     * @param int $nextattempt unix seconds
     * @param string $error what went wrong this time
     */
    public function retry(int $id, int $attempts, int $nextattempt, string $error): void;
}
