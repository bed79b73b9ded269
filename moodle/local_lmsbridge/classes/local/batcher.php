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
 * Splits outbox rows into requests lmsbridge accepts.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\local;

/**
 * Groups encoded events into request bodies of at most N events and at most M bytes.
 *
 * lmsbridge refuses bodies over 1 MiB and more than 500 events; 900 KiB leaves room for the
 * envelope and for a proxy that counts differently.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
final class batcher {

    /** @var int Default byte limit of one body. */
    const MAX_BYTES = 921600;

    /** @var int The most events lmsbridge takes in one request. */
    const MAX_EVENTS = 500;

    /** @var int */
    private $maxevents;

    /** @var int */
    private $maxbytes;

    /**
     * Constructor.
     *
     * @param int $maxevents events per request (clamped to 1..500)
     * @param int $maxbytes bytes per request body
     */
    public function __construct(int $maxevents, int $maxbytes = self::MAX_BYTES) {
        $this->maxevents = max(1, min(self::MAX_EVENTS, $maxevents));
        $this->maxbytes = $maxbytes;
    }

    /**
     * Splits events, in the order given, into batches.
     *
     * @param string[] $events event JSON keyed by outbox row id
     * @param string $prefix the body up to the events array (payload_builder::envelope_prefix)
     * @return array ['batches' => int[][] row ids per request, 'oversize' => int[] rows too big to send alone]
     */
    public function split(array $events, string $prefix): array {
        $fixed = strlen($prefix) + 2;
        $batches = [];
        $oversize = [];
        $current = [];
        $size = $fixed;
        foreach ($events as $id => $json) {
            $len = strlen($json);
            if ($fixed + $len > $this->maxbytes) {
                $oversize[] = $id;
                continue;
            }
            $added = $len + (empty($current) ? 0 : 1);
            if (!empty($current) && (count($current) >= $this->maxevents || $size + $added > $this->maxbytes)) {
                $batches[] = $current;
                $current = [];
                $size = $fixed;
                $added = $len;
            }
            $current[] = $id;
            $size += $added;
        }
        if (!empty($current)) {
            $batches[] = $current;
        }
        return ['batches' => $batches, 'oversize' => $oversize];
    }

    /**
     * The request body for some events.
     *
     * @param string $prefix the body up to the events array
     * @param string[] $events event JSON
     * @return string
     */
    public static function body(string $prefix, array $events): string {
        return $prefix . implode(',', $events) . ']}';
    }
}
