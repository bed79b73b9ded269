<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.

use local_lmsbridge\local\payload_builder;
use PHPUnit\Framework\TestCase;

/**
 * Event data shaped like Moodle's $event->get_data() for each observed event.
 */
final class payload_builder_test extends TestCase {

    /**
     * get_data() of an event.
     *
     * @param string $name
     * @param array $fields
     * @return array
     */
    private static function data(string $name, array $fields): array {
        return array_merge([
            'eventname' => $name,
            'component' => 'core',
            'objectid' => null,
            'contextinstanceid' => 2,
            'userid' => 2,
            'courseid' => 12,
            'relateduserid' => 34,
            'other' => null,
            'timecreated' => 1764290000,
        ], $fields);
    }

    public function test_course_completed_carries_timecompleted_from_the_snapshot(): void {
        $row = payload_builder::build(self::data('\core\event\course_completed', [
            'objectid' => 5, 'other' => ['relateduserid' => 34],
        ]), ['timecompleted' => 1764289000]);
        $this->assertSame('\core\event\course_completed', $row['name']);
        $this->assertSame(12, $row['courseid']);
        $this->assertSame(34, $row['userid'], 'the learner who completed, not who triggered it');
        $this->assertNull($row['cmid']);
        $this->assertSame(['timecompleted' => 1764289000], $row['payload']);
        // Without a snapshot the event's own time stands in.
        $row = payload_builder::build(self::data('\core\event\course_completed', []), []);
        $this->assertSame(['timecompleted' => 1764290000], $row['payload']);
    }

    public function test_activity_completion_of_an_lti_activity_carries_the_resource_link_id(): void {
        $data = self::data('\core\event\course_module_completion_updated', [
            'objectid' => 77, 'contextinstanceid' => 901,
            'other' => ['relateduserid' => 34, 'overrideby' => null, 'completionstate' => 1],
        ]);
        $row = payload_builder::build($data, [
            'modname' => 'lti', 'instance' => 45, 'completionstate' => 2, 'timemodified' => 1764289999,
        ]);
        $this->assertSame(901, $row['cmid']);
        $this->assertSame(34, $row['userid']);
        $this->assertSame([
            'completionstate' => 2,
            'modname' => 'lti',
            'instance_id' => 45,
            'timemodified' => 1764289999,
            'lti_resource_link_id' => '45',
        ], $row['payload']);

        $row = payload_builder::build($data, ['modname' => 'quiz', 'instance' => 8]);
        $this->assertSame(['completionstate' => 1, 'modname' => 'quiz', 'instance_id' => 8,
            'timemodified' => 1764290000], $row['payload'], 'no resource link id outside LTI; state from the event');

        $this->assertNull(payload_builder::build($data, []), 'activity deleted before the observer ran');
    }

    public function test_enrolment_events_carry_method_status_dates_and_sorted_roles(): void {
        foreach (['created', 'updated'] as $what) {
            $row = payload_builder::build(self::data('\core\event\user_enrolment_' . $what, [
                'objectid' => 300, 'other' => ['enrol' => 'manual'],
            ]), [
                'userenrolment' => ['id' => 300, 'status' => 1, 'timestart' => 1764000000, 'timeend' => 0],
                'roles' => ['student', 'editingteacher', 'student'],
            ]);
            $this->assertSame('\core\event\user_enrolment_' . $what, $row['name']);
            $this->assertSame(34, $row['userid']);
            $this->assertSame([
                'enrol' => 'manual', 'status' => 1, 'timestart' => 1764000000, 'timeend' => 0,
                'roles' => ['editingteacher', 'student'],
            ], $row['payload']);
        }
        // A deletion's row is gone from the database; the event carries it in "other".
        $row = payload_builder::build(self::data('\core\event\user_enrolment_deleted', [
            'objectid' => 300,
            'other' => ['enrol' => 'self', 'userenrolment' => ['status' => '0', 'timestart' => '5', 'timeend' => '9']],
        ]), ['roles' => []]);
        $this->assertSame(['enrol' => 'self', 'status' => 0, 'timestart' => 5, 'timeend' => 9, 'roles' => []],
            $row['payload']);
        $this->assertSame('{"enrol":"self","status":0,"timestart":5,"timeend":9,"roles":[]}',
            payload_builder::encode_payload($row['payload']), 'roles stay a JSON array when empty');

        $this->assertNull(payload_builder::build(self::data('\core\event\user_enrolment_created', [
            'other' => ['enrol' => 'manual'],
        ]), ['userenrolment' => null]), 'enrolment deleted again before the observer ran');
    }

    public function test_a_teachers_override_carries_item_grade_and_grader(): void {
        $row = payload_builder::build(self::data('\core\event\user_graded', [
            'objectid' => 555, 'userid' => 3,
            'other' => ['itemid' => 61, 'overridden' => true, 'finalgrade' => 7.5],
        ]), [
            'grade' => ['id' => 555, 'finalgrade' => '7.50000', 'rawgrademax' => '10.00000', 'overridden' => 1764290000,
                'usermodified' => 3, 'feedback' => '<p>Good</p>'],
            'item' => ['id' => 61, 'itemtype' => 'mod', 'itemmodule' => 'lti', 'iteminstance' => 45,
                'itemname' => 'Quiz engine', 'grademax' => '10.00000'],
        ]);
        $this->assertSame(34, $row['userid']);
        $this->assertSame(3, $row['actorid']);
        $this->assertSame([
            'itemid' => 61, 'itemtype' => 'mod', 'itemmodule' => 'lti', 'iteminstance' => 45,
            'itemname' => 'Quiz engine', 'finalgrade' => 7.5, 'rawgrademax' => 10.0, 'overridden' => true,
            'grader_id' => 3, 'feedback' => '<p>Good</p>',
        ], $row['payload']);
        $this->assertStringContainsString('"finalgrade":7.5,"rawgrademax":10.0,"overridden":true',
            payload_builder::encode_payload($row['payload']));
    }

    public function test_grades_removed_long_feedback_and_computed_totals(): void {
        $data = self::data('\core\event\user_graded', ['other' => ['itemid' => 1, 'overridden' => false]]);
        $row = payload_builder::build($data, [
            'grade' => ['finalgrade' => null, 'usermodified' => 0, 'feedback' => str_repeat('é', 5000)],
            'item' => ['id' => 1, 'itemtype' => 'manual', 'itemmodule' => null, 'iteminstance' => null,
                'itemname' => 'Essay', 'grademax' => '20'],
        ]);
        $this->assertNull($row['payload']['finalgrade']);
        $this->assertNull($row['payload']['grader_id']);
        $this->assertNull($row['payload']['itemmodule']);
        $this->assertSame(20.0, $row['payload']['rawgrademax']);
        $this->assertSame(payload_builder::FEEDBACK_MAX, mb_strlen($row['payload']['feedback'], 'UTF-8'));

        foreach (['course', 'category'] as $type) {
            $this->assertNull(payload_builder::build($data, ['grade' => ['finalgrade' => 50],
                'item' => ['itemtype' => $type]]), "a recomputed $type total is not sent");
            $row = payload_builder::build($data, ['grade' => ['finalgrade' => 50, 'overridden' => 1764290000],
                'item' => ['itemtype' => $type]]);
            $this->assertTrue($row['payload']['overridden'], "an overridden $type total is sent");
            $this->assertArrayNotHasKey('feedback', $row['payload']);
        }
    }

    public function test_only_lti_activities_are_sent_when_created(): void {
        $lti = self::data('\core\event\course_module_created', [
            'objectid' => 901, 'relateduserid' => null,
            'other' => ['modulename' => 'lti', 'instanceid' => 45, 'name' => 'Quiz engine'],
        ]);
        $row = payload_builder::build($lti, []);
        $this->assertSame(901, $row['cmid']);
        $this->assertSame(0, $row['userid']);
        $this->assertSame(['modname' => 'lti', 'instance_id' => 45, 'name' => 'Quiz engine'], $row['payload']);
        $lti['other']['modulename'] = 'forum';
        $this->assertNull(payload_builder::build($lti, []));
    }

    public function test_user_deleted_is_about_the_deleted_user_with_an_empty_object_payload(): void {
        $row = payload_builder::build(self::data('\core\event\user_deleted', [
            'objectid' => 34, 'userid' => 2, 'courseid' => 0, 'relateduserid' => 34,
            'other' => ['username' => 'x', 'email' => 'x@example.com'],
        ]), []);
        $this->assertSame(34, $row['userid']);
        $this->assertSame(0, $row['courseid']);
        $this->assertSame('{}', payload_builder::encode_payload($row['payload']),
            'nothing about the user but the id leaves Moodle');
    }

    public function test_unknown_events_are_not_sent(): void {
        $this->assertNull(payload_builder::build(self::data('\core\event\course_viewed', []), []));
        $this->assertCount(8, payload_builder::EVENTS);
    }

    public function test_event_json_is_the_contract_shape_with_nulls_for_absent_ids(): void {
        $row = (object)[
            'id' => '1234', 'eventid' => '8f0c0c7e-5a7e-4d7b-9a51-0d3c2f1e4b6a',
            'name' => '\core\event\user_deleted', 'courseid' => '0', 'userid' => '34', 'cmid' => null,
            'payload' => '{}', 'timecreated' => '1764290000', 'attempts' => '0',
        ];
        $this->assertSame('{"id":"8f0c0c7e-5a7e-4d7b-9a51-0d3c2f1e4b6a","seq":1234,'
            . '"name":"\\\\core\\\\event\\\\user_deleted","occurred_at":1764290000,'
            . '"course_id":null,"user_id":34,"cm_id":null,"payload":{}}', payload_builder::event_json($row));
        $decoded = json_decode(payload_builder::event_json($row), true);
        $this->assertSame('\core\event\user_deleted', $decoded['name']);
    }

    public function test_envelope_and_release_number(): void {
        $prefix = payload_builder::envelope_prefix('https://moodle.example.edu', 2026112800, '4.5.1+ (Build: 20250101)');
        $this->assertSame('{"site_url":"https://moodle.example.edu","plugin_version":2026112800,'
            . '"moodle_release":"4.5.1+","events":[', $prefix);
        $this->assertSame('4.1', payload_builder::release_number('4.1'));
    }

    public function test_without_grader_keeps_the_rest_of_the_payload(): void {
        $this->assertSame('{"itemid":1,"grader_id":null,"finalgrade":2.0}',
            payload_builder::without_grader('{"itemid":1,"grader_id":3,"finalgrade":2.0}'));
        $this->assertSame('{"timecompleted":5}', payload_builder::without_grader('{"timecompleted":5}'));
    }
}
