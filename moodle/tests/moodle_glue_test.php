<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.

require_once(__DIR__ . '/support/fake_moodle.php');

use local_lmsbridge\local\outbox;
use local_lmsbridge\local\signer;
use local_lmsbridge\observer;
use local_lmsbridge\task\send_events;
use PHPUnit\Framework\TestCase;

/**
 * The observer, the database outbox and the send task over faked Moodle APIs.
 */
final class moodle_glue_test extends TestCase {

    private const OUTBOX = 'local_lmsbridge_outbox';

    protected function setUp(): void {
        global $DB, $CFG;
        $DB = new fake_moodle_database();
        $CFG = (object)['wwwroot' => 'https://moodle.example.edu', 'release' => '4.1.9 (Build: 20240212)',
            'libdir' => __DIR__ . '/fake_moodle'];
        fake_moodle_config::$values = ['local_lmsbridge' => [
            'enabled' => '1', 'url' => 'https://lmsbridge.example/', 'siteid' => 'ms_site', 'secret' => 's3cret',
            'batchsize' => '200', 'outboxcap' => '0', 'version' => '2026112800',
        ]];
        fake_moodle_log::$debugging = [];
        fake_moodle_log::$mtrace = [];
        curl::$requests = [];
        $GLOBALS['FAKE_COURSE_MODULES'] = [];
        $GLOBALS['FAKE_ROLES'] = [];
    }

    private static function rows(): array {
        global $DB;
        return array_values($DB->tables[self::OUTBOX] ?? []);
    }

    private static function complete(int $user): void {
        observer::course_completed(\core\event\course_completed::fake(
            ['objectid' => 5 + $user, 'courseid' => 12, 'relateduserid' => $user, 'timecreated' => 1764290000],
            ['course_completions' => [5 + $user => (object)['id' => 5 + $user, 'timecompleted' => 1764289000]]]));
    }

    public function test_an_observed_completion_becomes_one_pending_outbox_row(): void {
        self::complete(34);
        $rows = self::rows();
        $this->assertCount(1, $rows);
        $row = $rows[0];
        $this->assertMatchesRegularExpression('/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/',
            $row->eventid);
        $this->assertSame('\core\event\course_completed', $row->name);
        $this->assertSame([12, 34, 0, null, 1764290000, 0, 0, outbox::STATUS_PENDING],
            [$row->courseid, $row->userid, $row->actorid, $row->cmid, $row->timecreated, $row->attempts,
                $row->nextattempt, $row->status]);
        $this->assertSame('{"timecompleted":1764289000}', $row->payload);
        $this->assertSame([], fake_moodle_log::$debugging);
    }

    public function test_nothing_is_recorded_while_sending_is_off(): void {
        fake_moodle_config::$values['local_lmsbridge']['enabled'] = '0';
        self::complete(34);
        $this->assertSame([], self::rows());
    }

    public function test_a_failure_to_record_is_reported_and_never_thrown_at_the_user(): void {
        global $DB;
        $DB->failinsert = true;
        self::complete(34);
        $this->assertSame([], self::rows());
        $this->assertCount(1, fake_moodle_log::$debugging);
        $this->assertStringContainsString('could not record \core\event\course_completed', fake_moodle_log::$debugging[0]);
    }

    public function test_enrolments_read_the_row_and_roles_after_the_commit(): void {
        global $DB;
        $DB->insert_record('user_enrolments', (object)['status' => 1, 'timestart' => 100, 'timeend' => 200, 'enrolid' => 3,
            'userid' => 34]);
        $GLOBALS['FAKE_ROLES']['1012/34'] = ['student', 'editingteacher'];
        observer::user_enrolment_changed(\core\event\user_enrolment_updated::fake(
            ['objectid' => 1, 'courseid' => 12, 'relateduserid' => 34, 'other' => ['enrol' => 'manual']]));
        observer::user_enrolment_changed(\core\event\user_enrolment_deleted::fake(['objectid' => 1, 'courseid' => 12,
            'relateduserid' => 34, 'other' => ['enrol' => 'manual',
                'userenrolment' => ['status' => 0, 'timestart' => 5, 'timeend' => 0]]]));
        // Created and deleted again before the observer ran: nothing to send for the creation.
        observer::user_enrolment_changed(\core\event\user_enrolment_created::fake(
            ['objectid' => 99, 'courseid' => 12, 'relateduserid' => 35, 'other' => ['enrol' => 'self']]));
        $rows = self::rows();
        $this->assertCount(2, $rows);
        $this->assertSame('{"enrol":"manual","status":1,"timestart":100,"timeend":200,'
            . '"roles":["editingteacher","student"]}', $rows[0]->payload);
        $this->assertSame('{"enrol":"manual","status":0,"timestart":5,"timeend":0,'
            . '"roles":["editingteacher","student"]}', $rows[1]->payload);
    }

    public function test_a_role_change_in_a_course_is_sent_as_an_update_of_each_enrolment_with_the_roles_now(): void {
        global $DB;
        $DB->sqlhandler = function (string $sql, array $params): array {
            $this->assertStringContainsString('FROM {user_enrolments} ue', $sql);
            $this->assertSame(['courseid' => 12, 'userid' => 34], $params);
            return [
                7 => (object)['id' => 7, 'status' => 0, 'timestart' => 0, 'timeend' => 0, 'enrol' => 'manual'],
                8 => (object)['id' => 8, 'status' => 1, 'timestart' => 0, 'timeend' => 0, 'enrol' => 'self'],
            ];
        };
        $GLOBALS['FAKE_ROLES']['1012/34'] = ['student'];
        observer::role_changed(\core\event\role_assigned::fake(['objectid' => 5, 'contextlevel' => CONTEXT_COURSE,
            'courseid' => 12, 'relateduserid' => 34, 'timecreated' => 1764290001]));
        // Roles outside a course (system, category) are not enrolments.
        observer::role_changed(\core\event\role_unassigned::fake(['objectid' => 5, 'contextlevel' => CONTEXT_SYSTEM,
            'courseid' => 0, 'relateduserid' => 34]));
        $rows = self::rows();
        $this->assertCount(2, $rows);
        foreach ($rows as $row) {
            $this->assertSame('\core\event\user_enrolment_updated', $row->name);
            $this->assertSame([12, 34, 1764290001], [$row->courseid, $row->userid, $row->timecreated]);
        }
        $this->assertSame('{"enrol":"manual","status":0,"timestart":0,"timeend":0,"roles":["student"]}', $rows[0]->payload);
        $this->assertSame('{"enrol":"self","status":1,"timestart":0,"timeend":0,"roles":["student"]}', $rows[1]->payload);

        // A role without an enrolment ("other users"): nothing to send.
        $DB->sqlhandler = function (): array {
            return [];
        };
        observer::role_changed(\core\event\role_assigned::fake(['objectid' => 5, 'contextlevel' => CONTEXT_COURSE,
            'courseid' => 12, 'relateduserid' => 40]));
        $this->assertCount(2, self::rows());
    }

    public function test_grades_and_activity_completions_carry_what_the_observer_looked_up(): void {
        global $DB;
        $DB->insert_record('grade_items', (object)['itemtype' => 'mod', 'itemmodule' => 'lti', 'iteminstance' => 45,
            'itemname' => 'Quiz engine', 'grademax' => '10.00000']);
        $DB->insert_record('grade_grades', (object)['itemid' => 1, 'userid' => 34, 'finalgrade' => '7.50000',
            'rawgrademax' => '10.00000', 'overridden' => 1764290000, 'usermodified' => 3, 'feedback' => null]);
        observer::user_graded(\core\event\user_graded::fake(['objectid' => 1, 'courseid' => 12, 'relateduserid' => 34,
            'userid' => 3, 'other' => ['itemid' => 1, 'overridden' => true, 'finalgrade' => 7.5]]));
        $GLOBALS['FAKE_COURSE_MODULES'][901] = (object)['id' => 901, 'modname' => 'lti', 'instance' => 45];
        observer::course_module_completion_updated(\core\event\course_module_completion_updated::fake(
            ['objectid' => 77, 'contextinstanceid' => 901, 'courseid' => 12, 'relateduserid' => 34,
                'other' => ['completionstate' => 1]],
            ['course_modules_completion' => [77 => (object)['id' => 77, 'completionstate' => 1, 'timemodified' => 9]]]));
        $rows = self::rows();
        $this->assertCount(2, $rows);
        $this->assertSame(3, $rows[0]->actorid);
        $this->assertSame('{"itemid":1,"itemtype":"mod","itemmodule":"lti","iteminstance":45,"itemname":"Quiz engine",'
            . '"finalgrade":7.5,"rawgrademax":10.0,"overridden":true,"grader_id":3}', $rows[0]->payload);
        $this->assertSame(901, $rows[1]->cmid);
        $this->assertSame('{"completionstate":1,"modname":"lti","instance_id":45,"timemodified":9,'
            . '"lti_resource_link_id":"45"}', $rows[1]->payload);
    }

    public function test_a_full_outbox_drops_given_up_rows_first_and_then_refuses_and_counts(): void {
        global $DB;
        fake_moodle_config::$values['local_lmsbridge']['outboxcap'] = '3';
        $DB->insert_record('local_lmsbridge_counter', (object)['name' => 'refused', 'value' => 0, 'timemodified' => 0]);
        self::complete(1);
        self::complete(2);
        self::complete(3);
        $DB->update_record(self::OUTBOX, (object)['id' => 1, 'status' => outbox::STATUS_FAILED]);
        self::complete(4);
        $this->assertSame([2, 3, 4], array_column(self::rows(), 'userid'), 'the given-up row made room');
        self::complete(5);
        $this->assertSame([2, 3, 4], array_column(self::rows(), 'userid'), 'pending rows are never dropped');
        $counter = $DB->get_record('local_lmsbridge_counter', ['name' => 'refused']);
        $this->assertSame(1, $counter->value);
        $this->assertGreaterThan(0, $counter->timemodified);
        $this->assertCount(1, fake_moodle_log::$debugging);
        $this->assertStringContainsString('outbox is full', fake_moodle_log::$debugging[0]);
    }

    public function test_the_task_sends_signed_batches_through_moodles_curl_and_records_the_outcome(): void {
        self::complete(34);
        self::complete(35);
        curl::$answer = function (string $url, array $headers, string $body): array {
            $ids = array_column(json_decode($body, true)['events'], 'id');
            return [200, ['Content-Type' => 'application/json'], json_encode(['accepted' => $ids, 'duplicates' => [],
                'rejected' => []])];
        };
        (new send_events())->execute();
        $this->assertSame([], self::rows());
        $this->assertCount(1, curl::$requests);
        $request = curl::$requests[0];
        $this->assertSame('https://lmsbridge.example/moodle/events', $request['url']);
        $headers = [];
        foreach ($request['headers'] as $line) {
            [$name, $value] = array_map('trim', explode(':', $line, 2));
            $headers[$name] = $value;
        }
        $this->assertSame('ms_site', $headers['X-Lmsbridge-Site']);
        $this->assertSame(signer::signature('s3cret', (int)$headers['X-Lmsbridge-Timestamp'], $request['body']),
            $headers['X-Lmsbridge-Signature']);
        $this->assertSame('', $headers['Expect']);
        $this->assertSame(0, $request['options']['CURLOPT_FOLLOWLOCATION']);
        $body = json_decode($request['body'], true);
        $this->assertSame(['https://moodle.example.edu', 2026112800, '4.1.9'],
            [$body['site_url'], $body['plugin_version'], $body['moodle_release']]);
        $config = fake_moodle_config::$values['local_lmsbridge'];
        $this->assertSame($config['lastrun'], $config['lastsuccess']);
        $this->assertArrayNotHasKey('lasterror', $config);
        $this->assertStringContainsString('2 delivered', implode("\n", fake_moodle_log::$mtrace));
        $this->assertStringNotContainsString('s3cret', implode("\n", fake_moodle_log::$mtrace));
    }

    public function test_the_task_keeps_rows_on_overload_and_reports_the_error(): void {
        self::complete(34);
        curl::$answer = function (): array {
            return [503, ['Retry-After' => '90'], '{"error":"overloaded"}'];
        };
        $before = time();
        (new send_events())->execute();
        $rows = self::rows();
        $this->assertCount(1, $rows);
        $this->assertSame(outbox::STATUS_PENDING, $rows[0]->status);
        $this->assertSame(1, $rows[0]->attempts);
        $this->assertGreaterThanOrEqual($before + 90, $rows[0]->nextattempt);
        $config = fake_moodle_config::$values['local_lmsbridge'];
        $this->assertSame('HTTP 503 overloaded', $config['lasterror']);
        $this->assertArrayNotHasKey('lastsuccess', $config);

        // Not due yet: the next run sends nothing.
        (new send_events())->execute();
        $this->assertCount(1, curl::$requests);
    }

    public function test_the_task_does_nothing_while_sending_is_off(): void {
        fake_moodle_config::$values['local_lmsbridge']['enabled'] = '0';
        (new send_events())->execute();
        $this->assertSame([], curl::$requests);
        $this->assertSame(['lmsbridge: sending is off'], fake_moodle_log::$mtrace);
    }
}
