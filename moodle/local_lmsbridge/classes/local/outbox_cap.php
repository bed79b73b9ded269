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
 * The outbox's size limit.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\local;

/**
 * Decides what a full outbox does with a new event.
 *
 * Rows that can go are those already given up (failed); delivered rows are deleted when
 * lmsbridge takes them. Pending rows are never removed to make room: when only pending rows
 * fill the outbox, the new event is refused, and the caller logs and counts it so the admin
 * sees that events were lost and why.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
final class outbox_cap {

    /**
     * The plan for adding one row.
     *
     * @param int $total rows in the outbox now
     * @param int $removable failed rows in the outbox now
     * @param int $cap the most rows allowed (0 or less: no limit)
     * @return array ['remove' => oldest failed rows to delete first, 'accept' => whether to insert]
     */
    public static function plan(int $total, int $removable, int $cap): array {
        if ($cap <= 0 || $total < $cap) {
            return ['remove' => 0, 'accept' => true];
        }
        $needed = $total - $cap + 1;
        $remove = min($needed, max(0, $removable));
        return ['remove' => $remove, 'accept' => $total - $remove < $cap];
    }
}
