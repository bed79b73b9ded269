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
 * An HTTP answer.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\local\http;

/**
 * Status, lower-cased headers and body of an answer; status 0 and an error when none came.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
final class response {

    /** @var int HTTP status, 0 when the request got no answer */
    public $status;

    /** @var string[] header name in lower case => value */
    public $headers;

    /** @var string */
    public $body;

    /** @var string what went wrong when no answer came */
    public $error;

    /**
     * Constructor.
     *
     * @param int $status
     * @param string[] $headers any case; stored lower-cased
     * @param string $body
     * @param string $error
     */
    public function __construct(int $status, array $headers = [], string $body = '', string $error = '') {
        $this->status = $status;
        $this->headers = array_change_key_case($headers, CASE_LOWER);
        $this->body = $body;
        $this->error = $error;
    }

    /**
     * A header's value.
     *
     * @param string $name any case
     * @return string|null
     */
    public function header(string $name): ?string {
        $value = $this->headers[strtolower($name)] ?? null;
        if (is_array($value)) {
            $value = end($value);
        }
        return $value === null ? null : (string)$value;
    }

    /**
     * Parses the header lines of a raw answer.
     *
     * @param string[] $lines header lines, status lines included
     * @return string[] lower-cased name => value (the last one when repeated)
     */
    public static function parse_header_lines(array $lines): array {
        $headers = [];
        foreach ($lines as $line) {
            $colon = strpos($line, ':');
            if ($colon === false) {
                continue;
            }
            $headers[strtolower(trim(substr($line, 0, $colon)))] = trim(substr($line, $colon + 1));
        }
        return $headers;
    }
}
