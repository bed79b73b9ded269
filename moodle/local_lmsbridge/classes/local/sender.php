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
 * Sends due outbox rows to lmsbridge.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\local;

use local_lmsbridge\local\http\response;
use local_lmsbridge\local\http\transport;

/**
 * One run of the send task: read due rows, batch, sign, post, act on each answer.
 *
 * A malformed-body answer (400) is narrowed down by halving the batch until the bad event
 * is alone, so one bad row never fails the good ones sent with it. Any other failure of a
 * whole request schedules its rows again with backoff and ends the run: lmsbridge is
 * unreachable, overloaded or refusing the key, and the next batches would fare the same.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
final class sender {

    /** @var outbox */
    private $outbox;

    /** @var transport */
    private $transport;

    /** @var sender_config */
    private $config;

    /** @var retry_policy */
    private $policy;

    /** @var callable function (int $min, int $max): int */
    private $random;

    /** @var callable function (): int, unix seconds when a request is signed */
    private $clock;

    /** @var array the running run's report */
    private $report;

    /** @var int unix seconds of the running run */
    private $now;

    /** @var string the body prefix of the running run */
    private $prefix;

    /** @var string[] event JSON by row id, for the running run */
    private $events;

    /** @var object[] rows by id, for the running run */
    private $rows;

    /**
     * Constructor.
     *
     * @param outbox $outbox
     * @param transport $transport
     * @param sender_config $config
     * @param retry_policy|null $policy
     * @param callable|null $random function (int $min, int $max): int; random_int by default
     * @param callable|null $clock function (): int; time by default
     */
    public function __construct(outbox $outbox, transport $transport, sender_config $config,
            ?retry_policy $policy = null, ?callable $random = null, ?callable $clock = null) {
        $this->outbox = $outbox;
        $this->transport = $transport;
        $this->config = $config;
        $this->policy = $policy ?? new retry_policy();
        $this->random = $random ?? 'random_int';
        $this->clock = $clock ?? 'time';
    }

    /**
     * Sends what is due.
     *
     * @param int $now unix seconds
     * @return array counts (requests, sent, accepted (stored now or before), duplicates (stored before),
     *               failed, retried), success (an
     *               answer listed events), stopped (a whole request failed), error (the last one)
     */
    public function run(int $now): array {
        $this->now = $now;
        $this->report = [
            'requests' => 0,
            'sent' => 0,
            'accepted' => 0,
            'duplicates' => 0,
            'failed' => 0,
            'retried' => 0,
            'success' => false,
            'stopped' => false,
            'error' => null,
        ];
        if (!$this->config->is_complete()) {
            $this->report['error'] = 'not configured: set the lmsbridge URL, site id and secret';
            return $this->report;
        }
        $batcher = new batcher($this->config->batchsize, $this->config->maxbytes);
        $limit = max(1, $this->config->batchsize) * max(1, $this->config->maxrequests);
        $this->rows = [];
        $this->events = [];
        foreach ($this->outbox->due($now, $limit) as $row) {
            $this->rows[(int)$row->id] = $row;
            $this->events[(int)$row->id] = payload_builder::event_json($row);
        }
        $this->prefix = payload_builder::envelope_prefix($this->config->siteurl, $this->config->pluginversion,
            $this->config->moodlerelease);
        $split = $batcher->split($this->events, $this->prefix);
        foreach ($split['oversize'] as $id) {
            $this->fail([$id], 'event larger than one request may be');
        }
        foreach ($split['batches'] as $batch) {
            if ($this->report['stopped'] || !$this->send($batch)) {
                break;
            }
        }
        return $this->report;
    }

    /**
     * Sends one batch, halving it on a malformed-body answer.
     *
     * @param int[] $ids row ids
     * @return bool whether the run may go on
     */
    private function send(array $ids): bool {
        if ($this->report['requests'] >= max(1, $this->config->maxrequests)) {
            return false;
        }
        $events = [];
        $sent = [];
        foreach ($ids as $id) {
            $events[] = $this->events[$id];
            $sent[(string)$this->rows[$id]->eventid] = $id;
        }
        $body = batcher::body($this->prefix, $events);
        // Signed at sending time, not at the start of the run: a run of slow requests must not
        // fall out of lmsbridge's timestamp window.
        $headers = signer::headers($this->config->siteid, $this->config->secret, (int)($this->clock)(), $body);
        $this->report['requests']++;
        $this->report['sent'] += count($ids);
        $answer = $this->transport->post($this->config->endpoint(), $headers, $body, $this->config->timeout);

        switch (retry_policy::classify($answer->status)) {
            case retry_policy::OK:
                $plan = response_handler::interpret($answer->body, $sent);
                if ($plan === null) {
                    $this->retry($ids, $answer, 'answer ' . $answer->status . ' is not the events answer');
                    return $this->stop('answer ' . $answer->status . ' is not the events answer');
                }
                $this->outbox->delete($plan['delete']);
                $this->report['accepted'] += count($plan['delete']);
                $this->report['duplicates'] += $plan['duplicates'];
                foreach ($plan['failed'] as $id => $reason) {
                    $this->fail([$id], $reason);
                }
                $this->retry($plan['unacknowledged'], $answer, 'not acknowledged by lmsbridge');
                $this->report['success'] = true;
                return true;

            case retry_policy::MALFORMED:
                $detail = self::error_text($answer);
                if (count($ids) === 1) {
                    $this->fail($ids, $detail);
                    return true;
                }
                return $this->halves($ids);

            case retry_policy::TOO_LARGE:
                if (count($ids) > 1) {
                    return $this->halves($ids);
                }
                $this->retry($ids, $answer, self::error_text($answer));
                return $this->stop(self::error_text($answer));

            default:
                $this->retry($ids, $answer, self::error_text($answer));
                return $this->stop(self::error_text($answer));
        }
    }

    /**
     * Sends the two halves of a batch one after the other.
     *
     * @param int[] $ids
     * @return bool whether the run may go on
     */
    private function halves(array $ids): bool {
        $half = intdiv(count($ids), 2);
        return $this->send(array_slice($ids, 0, $half)) && $this->send(array_slice($ids, $half));
    }

    /**
     * Ends the run after a failed request.
     *
     * @param string $error
     * @return bool false
     */
    private function stop(string $error): bool {
        $this->report['stopped'] = true;
        $this->report['error'] = $error;
        return false;
    }

    /**
     * Gives rows up.
     *
     * @param int[] $ids
     * @param string $error
     */
    private function fail(array $ids, string $error): void {
        foreach ($ids as $id) {
            $this->outbox->fail($id, (int)$this->rows[$id]->attempts + 1, $error);
            $this->report['failed']++;
        }
        $this->report['error'] = $error;
    }

    /**
     * Schedules rows again, or gives up those that have failed for too long.
     *
     * @param int[] $ids
     * @param response $answer the answer that failed them (for Retry-After)
     * @param string $error
     */
    private function retry(array $ids, response $answer, string $error): void {
        $retryafter = retry_policy::parse_retry_after($answer->header('Retry-After'), $this->now);
        foreach ($ids as $id) {
            $row = $this->rows[$id];
            $attempts = (int)$row->attempts + 1;
            if ($this->policy->gives_up($attempts, $this->now - (int)$row->timecreated)) {
                $this->outbox->fail($id, $attempts, 'gave up after ' . $attempts . ' attempts: ' . $error);
                $this->report['failed']++;
                continue;
            }
            $delay = $this->policy->delay($attempts, $retryafter, $this->random);
            $this->outbox->retry($id, $attempts, $this->now + $delay, $error);
            $this->report['retried']++;
        }
    }

    /**
     * A short description of a failed answer, without echoing a large body.
     *
     * @param response $answer
     * @return string
     */
    public static function error_text(response $answer): string {
        if ($answer->status === 0) {
            return 'no answer: ' . ($answer->error === '' ? 'unknown error' : $answer->error);
        }
        $text = 'HTTP ' . $answer->status;
        $decoded = json_decode($answer->body, true);
        if (is_array($decoded) && is_string($decoded['error'] ?? null)) {
            $text .= ' ' . $decoded['error'];
            if (is_string($decoded['detail'] ?? null)) {
                $text .= ': ' . $decoded['detail'];
            }
        }
        return substr($text, 0, 500);
    }
}
