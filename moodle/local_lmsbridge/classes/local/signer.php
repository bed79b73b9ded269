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
 * Request signing for lmsbridge's POST /moodle/events.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\local;

/**
 * HMAC-SHA256 over "<timestamp>.<raw body>" under the site's secret, sent in headers.
 *
 * The secret is used exactly as the administrator pasted it from `lmsbridge moodle pair`.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
final class signer {

    /**
     * The signature header's value.
     *
     * @param string $secret the site secret
     * @param int $timestamp unix seconds, the same value sent in X-Lmsbridge-Timestamp
     * @param string $body the exact bytes sent
     * @return string "v1=<lowercase hex>"
     */
    public static function signature(string $secret, int $timestamp, string $body): string {
        return 'v1=' . hash_hmac('sha256', $timestamp . '.' . $body, $secret);
    }

    /**
     * Every header of a signed request.
     *
     * @param string $siteid the site id from pairing
     * @param string $secret the site secret
     * @param int $timestamp unix seconds
     * @param string $body the exact bytes sent
     * @return string[] header name => value
     */
    public static function headers(string $siteid, string $secret, int $timestamp, string $body): array {
        return [
            'Content-Type' => 'application/json',
            'X-Lmsbridge-Site' => $siteid,
            'X-Lmsbridge-Timestamp' => (string)$timestamp,
            'X-Lmsbridge-Signature' => self::signature($secret, $timestamp, $body),
        ];
    }
}
