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
 * A transport on Moodle's curl class.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\local\http;

/**
 * Posts with Moodle's \curl, which applies the site's proxy settings and its HTTP security
 * settings (blocked hosts, allowed ports): lmsbridge's host must be allowed there.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
final class moodle_curl_transport implements transport {

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
        global $CFG;
        require_once($CFG->libdir . '/filelib.php');

        $curl = new \curl();
        $lines = [];
        foreach ($headers as $name => $value) {
            $lines[] = $name . ': ' . $value;
        }
        $lines[] = 'Expect:';
        $curl->setHeader($lines);
        $answer = $curl->post($url, $body, [
            'CURLOPT_TIMEOUT' => $timeout,
            'CURLOPT_CONNECTTIMEOUT' => min($timeout, 10),
            'CURLOPT_FOLLOWLOCATION' => 0,
        ]);
        if ($curl->get_errno()) {
            return new response(0, [], '', (string)$curl->error);
        }
        $info = $curl->get_info();
        $status = (int)($info['http_code'] ?? 0);
        if ($status === 0) {
            // Moodle's curl answers a blocked host with an error text and no status.
            return new response(0, [], '', is_string($answer) ? $answer : 'no answer');
        }
        $received = $curl->getResponse();
        return new response($status, is_array($received) ? $received : [], is_string($answer) ? $answer : '');
    }
}
