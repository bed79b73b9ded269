<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.

use local_lmsbridge\local\response_handler;
use PHPUnit\Framework\TestCase;

final class response_handler_test extends TestCase {

    private const SENT = ['a' => 1, 'b' => 2, 'c' => 3, 'd' => 4];

    public function test_accepted_and_duplicates_are_deleted_rejected_failed_the_rest_kept(): void {
        $plan = response_handler::interpret(json_encode([
            'accepted' => ['a'],
            'duplicates' => ['b'],
            'rejected' => [['id' => 'c', 'reason' => 'user_id missing']],
        ]), self::SENT);
        $this->assertSame([1, 2], $plan['delete']);
        $this->assertSame(1, $plan['duplicates']);
        $this->assertSame([3 => 'rejected by lmsbridge: user_id missing'], $plan['failed']);
        $this->assertSame([4], $plan['unacknowledged']);
    }

    public function test_ids_not_sent_are_ignored_and_stored_beats_rejected(): void {
        $plan = response_handler::interpret(json_encode([
            'accepted' => ['a', 'zzz', 7],
            'duplicates' => [],
            'rejected' => [['id' => 'a', 'reason' => 'x'], ['id' => 'nope'], 'junk', ['id' => 'd']],
        ]), self::SENT);
        $this->assertSame([1], $plan['delete']);
        $this->assertSame([4 => 'rejected by lmsbridge: rejected'], $plan['failed']);
        $this->assertSame([2, 3], $plan['unacknowledged']);
    }

    public function test_a_body_that_is_not_the_answer_is_refused(): void {
        $this->assertNull(response_handler::interpret('<html>proxy</html>', self::SENT));
        $this->assertNull(response_handler::interpret('{"error":"bad_signature"}', self::SENT));
        $this->assertNull(response_handler::interpret('{"accepted":"a"}', self::SENT));
        $this->assertNull(response_handler::interpret('[]', self::SENT));
    }
}
