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
 * Web service function local_lmsbridge_get_enrolments.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\external;

defined('MOODLE_INTERNAL') || die();

require_once(__DIR__ . '/../../externalcompat.php');

use core_external\external_api;
use core_external\external_function_parameters;
use core_external\external_multiple_structure;
use core_external\external_single_structure;
use core_external\external_value;

/**
 * Enrolments of a course with status, dates and roles.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class get_enrolments extends external_api {

    /**
     * Parameters.
     *
     * @return external_function_parameters
     */
    public static function execute_parameters(): external_function_parameters {
        return new external_function_parameters([
            'courseid' => new external_value(PARAM_INT, 'Course id'),
        ]);
    }

    /**
     * One entry per user and enrolment method.
     *
     * @param int $courseid
     * @return array
     */
    public static function execute(int $courseid): array {
        global $DB;
        $params = self::validate_parameters(self::execute_parameters(), ['courseid' => $courseid]);
        $context = \context_course::instance($params['courseid']);
        self::validate_context($context);
        require_capability('local/lmsbridge:pull', $context);

        $roles = [];
        $sql = "SELECT ra.id, ra.userid, r.shortname
                  FROM {role_assignments} ra
                  JOIN {role} r ON r.id = ra.roleid
                 WHERE ra.contextid = :contextid";
        $assignments = $DB->get_recordset_sql($sql, ['contextid' => $context->id]);
        foreach ($assignments as $ra) {
            $roles[(int)$ra->userid][$ra->shortname] = $ra->shortname;
        }
        $assignments->close();

        $sql = "SELECT ue.id, ue.userid, ue.status AS uestatus, e.status AS enrolstatus, e.enrol,
                       ue.timestart, ue.timeend
                  FROM {user_enrolments} ue
                  JOIN {enrol} e ON e.id = ue.enrolid
                 WHERE e.courseid = :courseid
              ORDER BY ue.userid ASC, ue.id ASC";
        $enrolments = [];
        $records = $DB->get_recordset_sql($sql, ['courseid' => $params['courseid']]);
        foreach ($records as $record) {
            $userroles = array_values($roles[(int)$record->userid] ?? []);
            sort($userroles);
            $enrolments[] = [
                'user_id' => (int)$record->userid,
                // A disabled enrolment method suspends everyone enrolled through it.
                'status' => ((int)$record->uestatus === 0 && (int)$record->enrolstatus === 0) ? 0 : 1,
                'roles' => $userroles,
                'timestart' => (int)$record->timestart,
                'timeend' => (int)$record->timeend,
                'enrol' => $record->enrol,
            ];
        }
        $records->close();
        return ['enrolments' => $enrolments];
    }

    /**
     * Return structure.
     *
     * @return external_single_structure
     */
    public static function execute_returns(): external_single_structure {
        return new external_single_structure([
            'enrolments' => new external_multiple_structure(new external_single_structure([
                'user_id' => new external_value(PARAM_INT, 'User id (the LTI sub)'),
                'status' => new external_value(PARAM_INT, '0 active, 1 suspended'),
                'roles' => new external_multiple_structure(new external_value(PARAM_RAW, 'Role shortname')),
                'timestart' => new external_value(PARAM_INT, 'Enrolment start, 0 for none'),
                'timeend' => new external_value(PARAM_INT, 'Enrolment end, 0 for none'),
                'enrol' => new external_value(PARAM_PLUGIN, 'Enrolment method'),
            ])),
        ]);
    }
}
