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
 * Reads lmsbridge's answer to a batch of events.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\local;

/**
 * Maps the 200 answer's accepted, duplicates and rejected lists onto outbox rows.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
final class response_handler {

    /**
     * What to do with each row of a batch after a 200.
     *
     * Accepted and duplicate events are stored on the other side: their rows go. A rejected
     * event is malformed and would be rejected again: its row is failed for good. A row the
     * answer does not mention is tried again later.
     *
     * @param string $body the answer's body
     * @param array $sent event id => outbox row id, for the events of the request
     * @return array|null ['delete' => int[], 'duplicates' => int (how many of delete were stored before),
     *                    'failed' => [row id => reason], 'unacknowledged' => int[]], or null when the body is
     *                    not the contract's answer
     */
    public static function interpret(string $body, array $sent): ?array {
        $answer = json_decode($body, true);
        if (!is_array($answer)) {
            return null;
        }
        if (!isset($answer['accepted']) && !isset($answer['duplicates']) && !isset($answer['rejected'])) {
            return null;
        }
        foreach (['accepted', 'duplicates', 'rejected'] as $key) {
            if (!array_key_exists($key, $answer)) {
                $answer[$key] = [];
            }
            if (!is_array($answer[$key])) {
                return null;
            }
        }
        $done = [];
        $duplicates = 0;
        foreach (['accepted', 'duplicates'] as $key) {
            foreach ($answer[$key] as $id) {
                if (is_string($id) && isset($sent[$id]) && !isset($done[$id])) {
                    $done[$id] = (int)$sent[$id];
                    $duplicates += $key === 'duplicates' ? 1 : 0;
                }
            }
        }
        $failed = [];
        foreach ($answer['rejected'] as $rejection) {
            if (!is_array($rejection) || !is_string($rejection['id'] ?? null)) {
                continue;
            }
            $id = $rejection['id'];
            if (!isset($sent[$id]) || isset($done[$id])) {
                continue;
            }
            $reason = is_string($rejection['reason'] ?? null) ? $rejection['reason'] : 'rejected';
            $failed[(int)$sent[$id]] = 'rejected by lmsbridge: ' . $reason;
        }
        $unacknowledged = [];
        foreach ($sent as $id => $rowid) {
            if (!isset($done[$id]) && !isset($failed[(int)$rowid])) {
                $unacknowledged[] = (int)$rowid;
            }
        }
        return ['delete' => array_values($done), 'duplicates' => $duplicates, 'failed' => $failed,
            'unacknowledged' => $unacknowledged];
    }
}
