<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.

use local_lmsbridge\local\outbox_cap;
use PHPUnit\Framework\TestCase;

final class outbox_cap_test extends TestCase {

    public function test_below_the_cap_everything_is_accepted_and_nothing_removed(): void {
        $this->assertSame(['remove' => 0, 'accept' => true], outbox_cap::plan(99, 50, 100));
        $this->assertSame(['remove' => 0, 'accept' => true], outbox_cap::plan(10 ** 6, 0, 0), '0 means no cap');
    }

    public function test_at_the_cap_failed_rows_make_room(): void {
        $this->assertSame(['remove' => 1, 'accept' => true], outbox_cap::plan(100, 5, 100));
        // Lowered cap: enough failed rows go to get under it.
        $this->assertSame(['remove' => 21, 'accept' => true], outbox_cap::plan(120, 40, 100));
    }

    public function test_pending_rows_are_never_removed_a_new_event_is_refused_instead(): void {
        $this->assertSame(['remove' => 0, 'accept' => false], outbox_cap::plan(100, 0, 100));
        // Some failed rows, not enough: they go, and the event is still refused.
        $this->assertSame(['remove' => 3, 'accept' => false], outbox_cap::plan(110, 3, 100));
    }
}
