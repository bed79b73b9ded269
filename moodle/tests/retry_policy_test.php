<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.

use local_lmsbridge\local\retry_policy;
use PHPUnit\Framework\TestCase;

final class retry_policy_test extends TestCase {

    public function test_only_400_is_a_malformed_body_and_413_asks_for_smaller_requests(): void {
        $this->assertSame(retry_policy::OK, retry_policy::classify(200));
        $this->assertSame(retry_policy::MALFORMED, retry_policy::classify(400));
        $this->assertSame(retry_policy::TOO_LARGE, retry_policy::classify(413));
        foreach ([0, 301, 302, 401, 403, 404, 408, 429, 500, 502, 503, 504] as $status) {
            $this->assertSame(retry_policy::RETRY, retry_policy::classify($status), "status $status");
        }
    }

    public function test_full_jitter_under_an_exponential_ceiling_that_is_capped(): void {
        $policy = new retry_policy(60, 3600);
        $max = function (int $min, int $max): int {
            return $max;
        };
        $min = function (int $min, int $max): int {
            return $min;
        };
        $this->assertSame([60, 120, 240, 480, 960, 1920, 3600, 3600],
            array_map(function ($n) use ($policy, $max) {
                return $policy->delay($n, null, $max);
            }, range(1, 8)));
        $this->assertSame(3600, $policy->delay(500, null, $max), 'a huge attempt count does not overflow');
        $this->assertSame(0, $policy->delay(3, null, $min), 'full jitter reaches down to zero');
        $seen = [];
        for ($i = 0; $i < 200; $i++) {
            $d = $policy->delay(4, null, 'random_int');
            $this->assertGreaterThanOrEqual(0, $d);
            $this->assertLessThanOrEqual(480, $d);
            $seen[$d] = true;
        }
        $this->assertGreaterThan(50, count($seen), 'delays are spread');
    }

    public function test_retry_after_is_a_floor_and_is_bounded(): void {
        $policy = new retry_policy(60, 3600);
        $min = function (int $min, int $max): int {
            return $min;
        };
        $this->assertSame(120, $policy->delay(1, 120, $min));
        $max = function (int $min, int $max): int {
            return $max;
        };
        $this->assertSame(240, $policy->delay(3, 10, $max), 'a short Retry-After does not shorten the backoff');
        $this->assertSame(retry_policy::RETRY_AFTER_MAX, $policy->delay(1, 10 ** 9, $min));
    }

    public function test_rows_are_given_up_only_when_both_old_and_tried_often(): void {
        $policy = new retry_policy(60, 3600, 7 * 86400, 10);
        $this->assertFalse($policy->gives_up(50, 86400), 'a day-long outage loses nothing');
        $this->assertFalse($policy->gives_up(3, 30 * 86400), 'an old row gets its attempts');
        $this->assertTrue($policy->gives_up(10, 7 * 86400));
    }

    public function test_retry_after_parses_seconds_and_http_dates(): void {
        $now = 1764290000;
        $this->assertSame(30, retry_policy::parse_retry_after('30', $now));
        $this->assertSame(30, retry_policy::parse_retry_after(' 30 ', $now));
        $date = gmdate('D, d M Y H:i:s', $now + 90) . ' GMT';
        $this->assertSame(90, retry_policy::parse_retry_after($date, $now));
        $past = gmdate('D, d M Y H:i:s', $now - 90) . ' GMT';
        $this->assertSame(0, retry_policy::parse_retry_after($past, $now));
        $this->assertNull(retry_policy::parse_retry_after(null, $now));
        $this->assertNull(retry_policy::parse_retry_after('soon', $now));
        $this->assertNull(retry_policy::parse_retry_after('-5', $now));
    }
}
