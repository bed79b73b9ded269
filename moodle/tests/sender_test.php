<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.

use local_lmsbridge\local\http\response;
use local_lmsbridge\local\outbox;
use local_lmsbridge\local\payload_builder;
use local_lmsbridge\local\retry_policy;
use local_lmsbridge\local\sender;
use local_lmsbridge\local\sender_config;
use local_lmsbridge\local\signer;
use local_lmsbridge_test\memory_outbox;
use local_lmsbridge_test\scripted_transport;
use PHPUnit\Framework\TestCase;

final class sender_test extends TestCase {

    private const NOW = 1764290000;

    private static function config(int $batchsize = 2): sender_config {
        $c = new sender_config();
        $c->url = 'https://lmsbridge.example/';
        $c->siteid = 'ms_0123456789abcdefghijkl';
        $c->secret = 'the-secret';
        $c->siteurl = 'https://moodle.example.edu';
        $c->pluginversion = 2026112800;
        $c->moodlerelease = '4.5.1 (Build: 20250101)';
        $c->batchsize = $batchsize;
        return $c;
    }

    private static function outbox(int $n, int $age = 60): memory_outbox {
        $outbox = new memory_outbox();
        for ($i = 1; $i <= $n; $i++) {
            $outbox->add(payload_builder::build([
                'eventname' => '\core\event\course_completed', 'courseid' => 12, 'relateduserid' => 100 + $i,
                'userid' => 2, 'timecreated' => self::NOW - $age,
            ], []));
        }
        return $outbox;
    }

    private static function ids(array $request): array {
        return array_column(json_decode($request['body'], true)['events'], 'id');
    }

    public function test_everything_accepted_leaves_an_empty_outbox_and_requests_are_signed(): void {
        $outbox = self::outbox(5);
        $transport = new scripted_transport([scripted_transport::class, 'accept_all']);
        $clock = function (): int {
            return self::NOW;
        };
        $report = (new sender($outbox, $transport, self::config(), null, null, $clock))->run(self::NOW);

        $this->assertSame([], $outbox->rows);
        $this->assertSame(3, $report['requests']);
        $this->assertSame(5, $report['accepted']);
        $this->assertTrue($report['success']);
        $this->assertNull($report['error']);
        $seqs = [];
        foreach ($transport->requests as $request) {
            $this->assertSame('https://lmsbridge.example/moodle/events', $request['url']);
            $h = $request['headers'];
            $this->assertSame('ms_0123456789abcdefghijkl', $h['X-Lmsbridge-Site']);
            $this->assertSame((string)self::NOW, $h['X-Lmsbridge-Timestamp']);
            $this->assertTrue(hash_equals(signer::signature('the-secret', self::NOW, $request['body']),
                $h['X-Lmsbridge-Signature']));
            $body = json_decode($request['body'], true);
            $this->assertSame('https://moodle.example.edu', $body['site_url']);
            $this->assertSame(2026112800, $body['plugin_version']);
            $this->assertSame('4.5.1', $body['moodle_release']);
            $seqs = array_merge($seqs, array_column($body['events'], 'seq'));
        }
        $this->assertSame([1, 2, 3, 4, 5], $seqs, 'seq is the outbox row id, oldest first');
    }

    public function test_each_request_is_signed_with_the_time_it_is_sent(): void {
        $outbox = self::outbox(3);
        $transport = new scripted_transport([scripted_transport::class, 'accept_all']);
        $ticks = self::NOW;
        $clock = function () use (&$ticks): int {
            // A slow lmsbridge: each request takes four minutes.
            return $ticks += 240;
        };
        (new sender($outbox, $transport, self::config(1), null, null, $clock))->run(self::NOW);
        $stamps = array_map(function ($r) {
            return (int)$r['headers']['X-Lmsbridge-Timestamp'];
        }, $transport->requests);
        $this->assertSame([self::NOW + 240, self::NOW + 480, self::NOW + 720], $stamps);
        foreach ($transport->requests as $i => $request) {
            $this->assertSame(signer::signature('the-secret', $stamps[$i], $request['body']),
                $request['headers']['X-Lmsbridge-Signature']);
        }
    }

    public function test_duplicates_are_deleted_rejected_failed_and_unmentioned_retried(): void {
        $outbox = self::outbox(3);
        $rows = array_values($outbox->rows);
        $transport = new scripted_transport(function () use ($rows) {
            return new response(200, [], json_encode([
                'accepted' => [],
                'duplicates' => [$rows[0]->eventid],
                'rejected' => [['id' => $rows[1]->eventid, 'reason' => 'unknown name']],
            ]));
        });
        $report = (new sender($outbox, $transport, self::config(10)))->run(self::NOW);
        $this->assertArrayNotHasKey(1, $outbox->rows);
        $this->assertSame(outbox::STATUS_FAILED, $outbox->rows[2]->status);
        $this->assertSame('rejected by lmsbridge: unknown name', $outbox->rows[2]->lasterror);
        $this->assertSame(outbox::STATUS_PENDING, $outbox->rows[3]->status);
        $this->assertSame(1, $outbox->rows[3]->attempts);
        $this->assertGreaterThanOrEqual(self::NOW, $outbox->rows[3]->nextattempt);
        $this->assertSame(['requests' => 1, 'accepted' => 1, 'failed' => 1, 'retried' => 1],
            array_intersect_key($report, ['requests' => 0, 'accepted' => 0, 'failed' => 0, 'retried' => 0]));

        // A failed row is never sent again; the retried one is, once due.
        $again = new scripted_transport([scripted_transport::class, 'accept_all']);
        (new sender($outbox, $again, self::config(10)))->run(self::NOW + 3600);
        $this->assertSame([[$rows[2]->eventid]], array_map([self::class, 'ids'], $again->requests));
        $this->assertSame([2], array_keys($outbox->rows));
    }

    public function test_overload_keeps_rows_honours_retry_after_and_ends_the_run(): void {
        foreach ([429, 503, 500, 401, 0] as $status) {
            $outbox = self::outbox(6);
            $transport = new scripted_transport(function () use ($status) {
                return $status === 0 ? new response(0, [], '', 'Connection refused')
                    : new response($status, ['Retry-After' => '120'], '{"error":"bad_signature"}');
            });
            $random = function (int $min, int $max): int {
                return $min;
            };
            $report = (new sender($outbox, $transport, self::config(), null, $random))->run(self::NOW);
            $this->assertCount(1, $transport->requests, "status $status: the run stops at the first failure");
            $this->assertTrue($report['stopped']);
            $this->assertCount(6, $outbox->with_status(outbox::STATUS_PENDING), "status $status: nothing lost");
            $this->assertSame([1, 1, 0, 0, 0, 0], array_values(array_map(function ($r) {
                return $r->attempts;
            }, $outbox->rows)), 'only the rows sent count an attempt');
            $this->assertSame($status === 0 ? self::NOW : self::NOW + 120, $outbox->rows[1]->nextattempt);
            $expected = $status === 0 ? 'no answer: Connection refused' : "HTTP $status bad_signature";
            $this->assertSame($expected, $report['error']);
            $this->assertSame($expected, $outbox->rows[1]->lasterror);
        }
    }

    public function test_a_malformed_body_is_narrowed_to_the_bad_event_and_the_others_delivered(): void {
        $outbox = self::outbox(8);
        $bad = $outbox->rows[6]->eventid;
        $transport = new scripted_transport(function (array $request) use ($bad) {
            if (in_array($bad, self::ids($request), true)) {
                return new response(400, [], '{"error":"malformed_body","detail":"events[0].payload"}');
            }
            return scripted_transport::accept_all($request);
        });
        $report = (new sender($outbox, $transport, self::config(8)))->run(self::NOW);
        $this->assertSame([6], array_keys($outbox->rows));
        $this->assertSame(outbox::STATUS_FAILED, $outbox->rows[6]->status);
        $this->assertSame('HTTP 400 malformed_body: events[0].payload', $outbox->rows[6]->lasterror);
        // 8 -> (4 ok) + (4 bad) -> (2 bad: 1 ok + 1 bad) + (2 ok): 1 + 2 log2(8) requests.
        $this->assertSame([8, 4, 4, 2, 1, 1, 2], array_map(function ($r) {
            return count(self::ids($r));
        }, $transport->requests));
        $this->assertSame(7, $report['accepted']);
    }

    public function test_too_large_splits_and_a_single_too_large_event_waits(): void {
        $outbox = self::outbox(4);
        $transport = new scripted_transport(function (array $request) {
            return count(self::ids($request)) > 1 ? new response(413) : scripted_transport::accept_all($request);
        });
        (new sender($outbox, $transport, self::config(4)))->run(self::NOW);
        $this->assertSame([], $outbox->rows);

        $outbox = self::outbox(1);
        (new sender($outbox, new scripted_transport(function () {
            return new response(413);
        }), self::config(4)))->run(self::NOW);
        $this->assertSame(outbox::STATUS_PENDING, $outbox->rows[1]->status);
        $this->assertSame(1, $outbox->rows[1]->attempts);
    }

    public function test_rows_failing_for_a_week_are_given_up_with_the_reason(): void {
        $outbox = self::outbox(3, 8 * 86400);
        foreach ($outbox->rows as $row) {
            $row->attempts = 9;
        }
        (new sender($outbox, new scripted_transport(function () {
            return new response(503);
        }), self::config(), new retry_policy(60, 3600, 7 * 86400, 10)))->run(self::NOW);
        $this->assertSame(outbox::STATUS_FAILED, $outbox->rows[1]->status);
        $this->assertSame('gave up after 10 attempts: HTTP 503', $outbox->rows[1]->lasterror);
        $this->assertSame(outbox::STATUS_FAILED, $outbox->rows[2]->status);
        $this->assertSame(outbox::STATUS_PENDING, $outbox->rows[3]->status, 'the unsent row is untouched');
        $this->assertSame(9, $outbox->rows[3]->attempts);
    }

    public function test_one_run_makes_at_most_maxrequests_requests(): void {
        $outbox = self::outbox(30);
        $config = self::config(2);
        $config->maxrequests = 4;
        $transport = new scripted_transport([scripted_transport::class, 'accept_all']);
        (new sender($outbox, $transport, $config))->run(self::NOW);
        $this->assertCount(4, $transport->requests);
        $this->assertCount(22, $outbox->rows);
        $this->assertSame(0, max(array_map(function ($r) {
            return $r->attempts;
        }, $outbox->rows)), 'rows left for the next run are not charged an attempt');
    }

    public function test_an_unconfigured_site_sends_nothing(): void {
        $outbox = self::outbox(1);
        $config = self::config();
        $config->secret = '';
        $transport = new scripted_transport([scripted_transport::class, 'accept_all']);
        $report = (new sender($outbox, $transport, $config))->run(self::NOW);
        $this->assertSame([], $transport->requests);
        $this->assertStringContainsString('not configured', $report['error']);
        $this->assertSame(0, $outbox->rows[1]->attempts);
    }

    public function test_an_answer_that_is_not_the_contracts_is_retried(): void {
        $outbox = self::outbox(1);
        $report = (new sender($outbox, new scripted_transport(function () {
            return new response(200, [], '<html>captive portal</html>');
        }), self::config()))->run(self::NOW);
        $this->assertTrue($report['stopped']);
        $this->assertFalse($report['success']);
        $this->assertSame(outbox::STATUS_PENDING, $outbox->rows[1]->status);
        $this->assertSame(1, $outbox->rows[1]->attempts);
    }
}
