<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.

use local_lmsbridge\local\batcher;
use local_lmsbridge\local\payload_builder;
use PHPUnit\Framework\TestCase;

final class batcher_test extends TestCase {

    /**
     * Events of the given JSON lengths, keyed by row id from 1.
     *
     * @param int[] $lengths
     * @return string[]
     */
    private static function events(array $lengths): array {
        $events = [];
        foreach ($lengths as $i => $len) {
            $head = '{"id":"' . ($i + 1) . '","pad":"';
            $events[$i + 1] = $head . str_repeat('x', max(0, $len - strlen($head) - 2)) . '"}';
        }
        return $events;
    }

    public function test_at_most_n_events_per_batch_in_the_order_given(): void {
        $prefix = payload_builder::envelope_prefix('https://m.example', 2026112800, '4.5');
        $split = (new batcher(3))->split(self::events(array_fill(0, 8, 50)), $prefix);
        $this->assertSame([[1, 2, 3], [4, 5, 6], [7, 8]], $split['batches']);
        $this->assertSame([], $split['oversize']);
    }

    public function test_batch_size_is_clamped_to_what_lmsbridge_takes(): void {
        $split = (new batcher(10000))->split(self::events(array_fill(0, 1001, 30)), '{"events":[');
        $this->assertSame([500, 500, 1], array_map('count', $split['batches']));
        $split = (new batcher(0))->split(self::events([30, 30]), '{"events":[');
        $this->assertSame([[1], [2]], $split['batches']);
    }

    public function test_no_body_exceeds_the_byte_limit_and_every_body_is_the_events_in_order(): void {
        $prefix = payload_builder::envelope_prefix('https://m.example', 2026112800, '4.5');
        $lengths = [];
        mt_srand(7);
        for ($i = 0; $i < 300; $i++) {
            $lengths[] = mt_rand(20, 900);
        }
        $events = self::events($lengths);
        $max = 4096;
        $split = (new batcher(500, $max))->split($events, $prefix);
        $seen = [];
        foreach ($split['batches'] as $batch) {
            $body = batcher::body($prefix, array_map(function ($id) use ($events) {
                return $events[$id];
            }, $batch));
            $this->assertLessThanOrEqual($max, strlen($body));
            $decoded = json_decode($body, true);
            $this->assertIsArray($decoded, 'a body is JSON');
            $this->assertSame(array_map('strval', $batch), array_column($decoded['events'], 'id'));
            $seen = array_merge($seen, $batch);
        }
        $this->assertSame(array_keys($events), $seen, 'every event once, in order');
        // Bodies are filled: joining any batch with the next event's would pass the limit.
        $batches = $split['batches'];
        for ($b = 0; $b + 1 < count($batches); $b++) {
            $with = array_merge($batches[$b], [$batches[$b + 1][0]]);
            $body = batcher::body($prefix, array_map(function ($id) use ($events) {
                return $events[$id];
            }, $with));
            $this->assertGreaterThan($max, strlen($body));
        }
    }

    public function test_an_event_too_big_for_any_request_is_set_apart_and_the_rest_still_go(): void {
        $split = (new batcher(10, 1000))->split(self::events([100, 2000, 100]), '{"events":[');
        $this->assertSame([2], $split['oversize']);
        $this->assertSame([[1, 3]], $split['batches']);
    }

    public function test_the_default_limit_is_900_kib(): void {
        $this->assertSame(900 * 1024, batcher::MAX_BYTES);
        $events = self::events(array_fill(0, 40, 50000));
        $prefix = '{"events":[';
        $split = (new batcher(500))->split($events, $prefix);
        $this->assertSame([18, 18, 4], array_map('count', $split['batches']));
    }
}
