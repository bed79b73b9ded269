<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.

require_once(__DIR__ . '/support/fake_moodle.php');

use core_external\external_api;
use core_external\external_description;
use core_external\external_multiple_structure;
use core_external\external_single_structure;
use core_external\external_value;
use local_lmsbridge\external\get_activity_completions;
use local_lmsbridge\external\get_course_completions;
use local_lmsbridge\external\get_enrolments;
use local_lmsbridge\external\get_grade_items;
use PHPUnit\Framework\TestCase;

/**
 * The four web service functions over faked external API and database: what they check, and
 * that their answers are the contract's shapes and match their own return descriptions.
 */
final class external_functions_test extends TestCase {

    protected function setUp(): void {
        global $DB, $CFG;
        $DB = new fake_moodle_database();
        $CFG = (object)['libdir' => __DIR__ . '/fake_moodle'];
        external_api::$calls = [];
        fake_moodle_access::$granted = ['local/lmsbridge:pull'];
        fake_moodle_access::$checked = [];
    }

    /**
     * Asserts a value has exactly the shape a return description gives.
     *
     * @param external_description $description
     * @param mixed $value
     * @param string $path
     */
    private function conforms(external_description $description, $value, string $path = ''): void {
        if ($description instanceof external_single_structure) {
            $this->assertIsArray($value, $path);
            $this->assertSame(array_keys($description->keys), array_keys($value), "$path keys");
            foreach ($description->keys as $key => $inner) {
                $this->conforms($inner, $value[$key], "$path.$key");
            }
        } else if ($description instanceof external_multiple_structure) {
            $this->assertIsArray($value, $path);
            $this->assertSame(array_keys($value), $value ? range(0, count($value) - 1) : [], "$path is a list");
            foreach ($value as $i => $item) {
                $this->conforms($description->content, $item, "$path[$i]");
            }
        } else if ($description instanceof external_value) {
            if ($value === null) {
                $this->assertTrue($description->allownull, "$path may not be null");
                return;
            }
            $types = [PARAM_INT => 'is_int', PARAM_FLOAT => 'is_float'];
            $check = $types[$description->type] ?? 'is_string';
            $this->assertTrue($check($value), "$path: " . var_export($value, true) . " is not {$description->type}");
        }
    }

    public function test_course_completions_since_a_time_checked_before_read(): void {
        global $DB;
        foreach ([[34, 1000], [35, null], [36, 2000], [37, 500]] as [$user, $time]) {
            $DB->insert_record('course_completions', (object)['course' => 12, 'userid' => $user, 'timecompleted' => $time]);
        }
        $DB->insert_record('course_completions', (object)['course' => 13, 'userid' => 34, 'timecompleted' => 3000]);
        $answer = get_course_completions::execute(12, 1000);
        $this->assertSame(['completions' => [['user_id' => 34, 'timecompleted' => 1000],
            ['user_id' => 36, 'timecompleted' => 2000]], 'warnings' => []], $answer);
        $this->conforms(get_course_completions::execute_returns(), $answer);
        $this->assertSame([['validate_parameters', ['courseid', 'since']], ['validate_context', 1012]],
            external_api::$calls);
        $this->assertSame([['local/lmsbridge:pull', 1012]], fake_moodle_access::$checked);
    }

    public function test_without_the_capability_nothing_is_read(): void {
        global $DB;
        fake_moodle_access::$granted = [];
        $DB->sqlhandler = function () {
            $this->fail('read before the capability check');
        };
        foreach ([
            function () {
                get_course_completions::execute(12, 0);
            },
            function () {
                get_activity_completions::execute(12, 0);
            },
            function () {
                get_grade_items::execute(12);
            },
            function () {
                get_enrolments::execute(12);
            },
        ] as $call) {
            try {
                $call();
                $this->fail('no exception');
            } catch (required_capability_exception $e) {
                $this->assertSame('local/lmsbridge:pull', $e->getMessage());
            }
        }
        $this->assertSame(0, $DB->reads);
    }

    public function test_activity_completions_and_grade_items_are_the_contracts_shapes(): void {
        global $DB;
        $DB->sqlhandler = function (string $sql, array $params): array {
            $this->assertSame(['course' => 12, 'since' => 0], $params);
            return [5 => (object)['id' => 5, 'userid' => '34', 'coursemoduleid' => '901', 'modname' => 'lti',
                'instance' => '45', 'completionstate' => '1', 'timemodified' => '1764290000']];
        };
        $answer = get_activity_completions::execute(12, 0);
        $this->assertSame(['completions' => [['user_id' => 34, 'cm_id' => 901, 'modname' => 'lti', 'instance_id' => 45,
            'completionstate' => 1, 'timemodified' => 1764290000]]], $answer);
        $this->conforms(get_activity_completions::execute_returns(), $answer);

        $DB->insert_record('grade_items', (object)['courseid' => 12, 'itemtype' => 'course', 'itemmodule' => null,
            'iteminstance' => null, 'itemname' => null, 'grademax' => '100.00000', 'grademin' => '0.00000',
            'gradepass' => '0.00000', 'hidden' => '0', 'locked' => '0', 'sortorder' => 1]);
        $DB->insert_record('grade_items', (object)['courseid' => 12, 'itemtype' => 'mod', 'itemmodule' => 'lti',
            'iteminstance' => '45', 'itemname' => 'Quiz <b>engine</b>', 'grademax' => '10.00000', 'grademin' => '0.00000',
            'gradepass' => '5.00000', 'hidden' => '1', 'locked' => '1764290000', 'sortorder' => 2]);
        $answer = get_grade_items::execute(12);
        $this->assertSame([
            ['id' => 1, 'itemtype' => 'course', 'itemmodule' => null, 'iteminstance' => null, 'itemname' => null,
                'grademax' => 100.0, 'grademin' => 0.0, 'gradepass' => 0.0, 'hidden' => 0, 'locked' => 0],
            ['id' => 2, 'itemtype' => 'mod', 'itemmodule' => 'lti', 'iteminstance' => 45, 'itemname' => 'Quiz <b>engine</b>',
                'grademax' => 10.0, 'grademin' => 0.0, 'gradepass' => 5.0, 'hidden' => 1, 'locked' => 1764290000],
        ], $answer['items']);
        $this->conforms(get_grade_items::execute_returns(), $answer);
    }

    public function test_enrolments_one_per_method_suspended_when_the_method_is_disabled(): void {
        global $DB;
        $DB->sqlhandler = function (string $sql, array $params): array {
            if (strpos($sql, '{role_assignments}') !== false) {
                $this->assertSame(['contextid' => 1012], $params);
                return [1 => (object)['id' => 1, 'userid' => '34', 'shortname' => 'student'],
                    2 => (object)['id' => 2, 'userid' => '34', 'shortname' => 'editingteacher']];
            }
            $this->assertSame(['courseid' => 12], $params);
            return [
                7 => (object)['id' => 7, 'userid' => '34', 'uestatus' => '0', 'enrolstatus' => '0', 'enrol' => 'manual',
                    'timestart' => '0', 'timeend' => '0'],
                8 => (object)['id' => 8, 'userid' => '34', 'uestatus' => '0', 'enrolstatus' => '1', 'enrol' => 'self',
                    'timestart' => '100', 'timeend' => '200'],
                9 => (object)['id' => 9, 'userid' => '35', 'uestatus' => '1', 'enrolstatus' => '0', 'enrol' => 'manual',
                    'timestart' => '0', 'timeend' => '0'],
            ];
        };
        $answer = get_enrolments::execute(12);
        $this->assertSame([
            ['user_id' => 34, 'status' => 0, 'roles' => ['editingteacher', 'student'], 'timestart' => 0, 'timeend' => 0,
                'enrol' => 'manual'],
            ['user_id' => 34, 'status' => 1, 'roles' => ['editingteacher', 'student'], 'timestart' => 100,
                'timeend' => 200, 'enrol' => 'self'],
            ['user_id' => 35, 'status' => 1, 'roles' => [], 'timestart' => 0, 'timeend' => 0, 'enrol' => 'manual'],
        ], $answer['enrolments']);
        $this->conforms(get_enrolments::execute_returns(), $answer);
    }
}
