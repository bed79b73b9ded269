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
 * Web service function local_lmsbridge_get_course_completions.
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
use core_external\external_warnings;

/**
 * Course completions of a course, for lmsbridge to fill what events missed.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class get_course_completions extends external_api {

    /**
     * Parameters.
     *
     * @return external_function_parameters
     */
    public static function execute_parameters(): external_function_parameters {
        return new external_function_parameters([
            'courseid' => new external_value(PARAM_INT, 'Course id'),
            'since' => new external_value(PARAM_INT, 'Only completions at or after this time', VALUE_DEFAULT, 0),
        ]);
    }

    /**
     * Completions of the course at or after $since, oldest first.
     *
     * @param int $courseid
     * @param int $since unix seconds
     * @return array
     */
    public static function execute(int $courseid, int $since = 0): array {
        global $DB;
        $params = self::validate_parameters(self::execute_parameters(), ['courseid' => $courseid, 'since' => $since]);
        $context = \context_course::instance($params['courseid']);
        self::validate_context($context);
        require_capability('local/lmsbridge:pull', $context);

        $records = $DB->get_records_select('course_completions',
            'course = :course AND timecompleted IS NOT NULL AND timecompleted >= :since',
            ['course' => $params['courseid'], 'since' => $params['since']],
            'timecompleted ASC, id ASC', 'id, userid, timecompleted');
        $completions = [];
        foreach ($records as $record) {
            $completions[] = ['user_id' => (int)$record->userid, 'timecompleted' => (int)$record->timecompleted];
        }
        return ['completions' => $completions, 'warnings' => []];
    }

    /**
     * Return structure.
     *
     * @return external_single_structure
     */
    public static function execute_returns(): external_single_structure {
        return new external_single_structure([
            'completions' => new external_multiple_structure(new external_single_structure([
                'user_id' => new external_value(PARAM_INT, 'User id (the LTI sub)'),
                'timecompleted' => new external_value(PARAM_INT, 'When the course was completed'),
            ])),
            'warnings' => new external_warnings(),
        ]);
    }
}
