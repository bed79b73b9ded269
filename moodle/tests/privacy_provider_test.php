<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.

require_once(__DIR__ . '/support/fake_moodle.php');

use core_privacy\local\metadata\collection;
use core_privacy\local\request\approved_contextlist;
use core_privacy\local\request\approved_userlist;
use core_privacy\local\request\writer;
use local_lmsbridge\local\payload_builder;
use local_lmsbridge\privacy\provider;
use PHPUnit\Framework\TestCase;

/**
 * The privacy provider's metadata, export and deletion over the faked database.
 */
final class privacy_provider_test extends TestCase {

    private const OUTBOX = 'local_lmsbridge_outbox';

    protected function setUp(): void {
        global $DB;
        $DB = new fake_moodle_database();
        writer::$exported = [];
        // Course 12: learner 34 completed; learner 35 graded by teacher 34 (a user can be both);
        // learner 35 enrolled. Course 13: learner 34 completed. No course: user 34 deleted.
        self::add(['eventname' => '\core\event\course_completed', 'courseid' => 12, 'relateduserid' => 34], []);
        self::add(['eventname' => '\core\event\user_graded', 'courseid' => 12, 'relateduserid' => 35,
            'other' => ['itemid' => 1]], ['grade' => ['finalgrade' => 5, 'usermodified' => 34],
            'item' => ['itemtype' => 'mod']]);
        self::add(['eventname' => '\core\event\user_enrolment_created', 'courseid' => 12, 'relateduserid' => 35,
            'other' => ['enrol' => 'manual']], ['userenrolment' => ['status' => 0]]);
        self::add(['eventname' => '\core\event\course_completed', 'courseid' => 13, 'relateduserid' => 34], []);
        self::add(['eventname' => '\core\event\user_deleted', 'objectid' => 34], []);
    }

    private static function add(array $data, array $extra): void {
        global $DB;
        $built = payload_builder::build($data + ['timecreated' => 1764290000], $extra);
        $DB->insert_record(self::OUTBOX, (object)[
            'eventid' => 'e' . (count($DB->tables[self::OUTBOX] ?? []) + 1), 'name' => $built['name'],
            'courseid' => $built['courseid'], 'userid' => $built['userid'], 'actorid' => $built['actorid'],
            'cmid' => $built['cmid'], 'payload' => payload_builder::encode_payload($built['payload']),
            'timecreated' => $built['timecreated'], 'attempts' => 0, 'nextattempt' => 0, 'lasterror' => null,
            'status' => 0,
        ]);
    }

    private static function rows(): array {
        global $DB;
        return array_map(function ($r) {
            return [$r->eventid, $r->courseid, $r->userid, $r->actorid];
        }, array_values($DB->tables[self::OUTBOX]));
    }

    public function test_metadata_declares_the_outbox_and_exactly_what_leaves_for_lmsbridge(): void {
        $items = provider::get_metadata(new collection('local_lmsbridge'))->items;
        $this->assertSame(['database_table', 'external_location'], array_column($items, 'type'));
        $this->assertSame('local_lmsbridge_outbox', $items[0]['name']);
        $this->assertSame(['userid', 'actorid', 'courseid', 'cmid', 'name', 'payload', 'timecreated'],
            array_keys($items[0]['fields']));
        $this->assertSame('lmsbridge', $items[1]['name']);
        $this->assertSame('privacy:metadata:lmsbridge', $items[1]['summary']);
        $this->assertSame(['user_id', 'course_id', 'cm_id', 'occurred_at', 'completion', 'enrolment', 'grade',
            'grader_id'], array_keys($items[1]['fields']));
    }

    public function test_deleting_a_user_in_a_course_deletes_rows_about_them_and_removes_them_as_grader(): void {
        global $DB;
        $user = (object)['id' => 34];
        provider::delete_data_for_user(new approved_contextlist($user, [context_course::instance(12)]));
        $this->assertSame([['e2', 12, 35, 0], ['e3', 12, 35, 0], ['e4', 13, 34, 0], ['e5', 0, 34, 0]], self::rows());
        $graded = $DB->get_record(self::OUTBOX, ['eventid' => 'e2']);
        $this->assertNull(json_decode($graded->payload, true)['grader_id'], 'the grader is gone from the payload');
        $this->assertSame(5.0, json_decode($graded->payload, true)['finalgrade'], 'the learner\'s grade stays');

        provider::delete_data_for_user(new approved_contextlist($user, [context_user::instance(34)]));
        $this->assertSame([['e2', 12, 35, 0], ['e3', 12, 35, 0], ['e4', 13, 34, 0]], self::rows());
    }

    public function test_deleting_users_of_a_context_and_a_whole_context(): void {
        provider::delete_data_for_users(new approved_userlist(context_course::instance(12), [35]));
        $this->assertSame([['e1', 12, 34, 0], ['e4', 13, 34, 0], ['e5', 0, 34, 0]], self::rows());
        // Another user's context: nothing of user 34 goes.
        provider::delete_data_for_users(new approved_userlist(context_user::instance(99), [34]));
        $this->assertCount(3, self::rows());
        provider::delete_data_for_all_users_in_context(context_course::instance(13));
        $this->assertSame([['e1', 12, 34, 0], ['e5', 0, 34, 0]], self::rows());
        provider::delete_data_for_all_users_in_context(context_user::instance(34));
        $this->assertSame([['e1', 12, 34, 0]], self::rows());
    }

    public function test_export_lists_the_users_rows_per_context_saying_which_are_about_them(): void {
        $user = (object)['id' => 34];
        $course = context_course::instance(12);
        provider::export_user_data(new approved_contextlist($user, [$course, context_user::instance(34)]));
        $exported = writer::$exported[$course->id]['[[privacy:outboxpath]]']->events;
        $this->assertSame(['\core\event\course_completed', '\core\event\user_graded'], array_column($exported, 'event'));
        $this->assertSame(['Yes', 'No'], array_column($exported, 'about_you'));
        $this->assertSame(5.0, $exported[1]->details->finalgrade);
        $this->assertCount(1, writer::$exported[context_user::instance(34)->id]['[[privacy:outboxpath]]']->events);
    }
}
