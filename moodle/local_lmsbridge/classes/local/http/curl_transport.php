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
 * A transport on PHP's curl extension, for use outside Moodle.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\local\http;

/**
 * Posts with PHP's curl extension. Used by the standalone sender test; inside Moodle the
 * plugin uses moodle_curl_transport so Moodle's proxy and host-blocking settings apply.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
final class curl_transport implements transport {

    /**
     * Posts a body.
     *
     * @param string $url
     * @param string[] $headers
     * @param string $body
     * @param int $timeout
     * @return response
     */
    public function post(string $url, array $headers, string $body, int $timeout): response {
        $lines = [];
        foreach ($headers as $name => $value) {
            $lines[] = $name . ': ' . $value;
        }
        // Without this curl sends "Expect: 100-continue" for large bodies and waits for it.
        $lines[] = 'Expect:';
        $received = [];
        $ch = curl_init($url);
        curl_setopt_array($ch, [
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => $body,
            CURLOPT_HTTPHEADER => $lines,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_TIMEOUT => $timeout,
            CURLOPT_CONNECTTIMEOUT => min($timeout, 10),
            CURLOPT_PROTOCOLS => CURLPROTO_HTTP | CURLPROTO_HTTPS,
            CURLOPT_HEADERFUNCTION => function ($ch, string $line) use (&$received): int {
                $received[] = $line;
                return strlen($line);
            },
        ]);
        $answer = curl_exec($ch);
        if ($answer === false) {
            $error = curl_error($ch);
            curl_close($ch);
            return new response(0, [], '', $error);
        }
        $status = (int)curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        curl_close($ch);
        return new response($status, response::parse_header_lines($received), (string)$answer);
    }
}
