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
 * What to do after an answer from lmsbridge, and when to try again.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\local;

/**
 * Classifies answers, computes backoff and decides when a row is given up.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
final class retry_policy {

    /** @var string The answer lists each event's fate. */
    const OK = 'ok';
    /** @var string The whole request failed for a reason that may pass: send again later. */
    const RETRY = 'retry';
    /** @var string The body was malformed (400): some event in it is bad, never resend as is. */
    const MALFORMED = 'malformed';
    /** @var string The body was too large (413): send smaller requests. */
    const TOO_LARGE = 'toolarge';

    /** @var int Longest Retry-After honoured, in seconds: a typo on the server must not park rows for a year. */
    const RETRY_AFTER_MAX = 21600;

    /** @var int first backoff ceiling, seconds */
    private $base;

    /** @var int highest backoff ceiling, seconds */
    private $cap;

    /** @var int age after which a row that keeps failing is given up, seconds */
    private $giveupage;

    /** @var int attempts a row gets at the least before it is given up */
    private $minattempts;

    /**
     * Constructor.
     *
     * @param int $base first backoff ceiling, seconds
     * @param int $cap highest backoff ceiling, seconds
     * @param int $giveupage seconds after which a failing row is given up
     * @param int $minattempts attempts at the least before giving up
     */
    public function __construct(int $base = 60, int $cap = 3600, int $giveupage = 7 * 86400, int $minattempts = 10) {
        $this->base = max(1, $base);
        $this->cap = max($this->base, $cap);
        $this->giveupage = $giveupage;
        $this->minattempts = $minattempts;
    }

    /**
     * What an HTTP status means for the request's events.
     *
     * @param int $status HTTP status, 0 when no answer came (DNS, connection, timeout)
     * @return string one of the constants
     */
    public static function classify(int $status): string {
        if ($status >= 200 && $status < 300) {
            return self::OK;
        }
        if ($status === 400) {
            return self::MALFORMED;
        }
        if ($status === 413) {
            return self::TOO_LARGE;
        }
        // 401 (a secret being rotated, a clock off), 408, 429, 5xx, no answer, and anything
        // unexpected such as a proxy's 404 or a redirect: the events themselves are fine.
        return self::RETRY;
    }

    /**
     * Seconds to wait before the given attempt's successor: full jitter under an exponential
     * ceiling, never less than the server's Retry-After.
     *
     * @param int $attempts attempts made so far (1 after the first failure)
     * @param int|null $retryafter the server's Retry-After in seconds
     * @param callable $random function (int $min, int $max): int
     * @return int
     */
    public function delay(int $attempts, ?int $retryafter, callable $random): int {
        $exponent = max(0, min(30, $attempts - 1));
        $ceiling = (int)min($this->cap, $this->base * (2 ** $exponent));
        $delay = (int)$random(0, $ceiling);
        if ($retryafter !== null && $retryafter > 0) {
            $delay = max($delay, min($retryafter, self::RETRY_AFTER_MAX));
        }
        return $delay;
    }

    /**
     * Whether a row that failed again is given up (marked failed, kept for the admin).
     *
     * Both conditions must hold, so an lmsbridge outage of a few days loses nothing and a
     * burst of quick failures does not give up a fresh row.
     *
     * @param int $attempts attempts made, including the one that just failed
     * @param int $age seconds since the event
     * @return bool
     */
    public function gives_up(int $attempts, int $age): bool {
        return $attempts >= $this->minattempts && $age >= $this->giveupage;
    }

    /**
     * Retry-After in seconds, from delta seconds or an HTTP date.
     *
     * @param string|null $value the header
     * @param int $now unix seconds
     * @return int|null
     */
    public static function parse_retry_after(?string $value, int $now): ?int {
        if ($value === null) {
            return null;
        }
        $value = trim($value);
        if ($value === '') {
            return null;
        }
        if (ctype_digit($value)) {
            return (int)$value;
        }
        $date = \DateTime::createFromFormat('D, d M Y H:i:s \G\M\T', $value, new \DateTimeZone('UTC'));
        if ($date === false) {
            return null;
        }
        return max(0, $date->getTimestamp() - $now);
    }
}
