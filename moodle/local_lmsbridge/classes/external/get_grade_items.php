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
 * Web service function local_lmsbridge_get_grade_items.
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
 * Grade items of a course with their settings.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class get_grade_items extends external_api {

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
     * Every grade item of the course in gradebook order.
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

        $records = $DB->get_records('grade_items', ['courseid' => $params['courseid']], 'sortorder ASC, id ASC',
            'id, itemtype, itemmodule, iteminstance, itemname, grademax, grademin, gradepass, hidden, locked');
        $items = [];
        foreach ($records as $record) {
            $items[] = [
                'id' => (int)$record->id,
                'itemtype' => $record->itemtype,
                'itemmodule' => $record->itemmodule,
                'iteminstance' => $record->iteminstance === null ? null : (int)$record->iteminstance,
                'itemname' => $record->itemname,
                'grademax' => (float)$record->grademax,
                'grademin' => (float)$record->grademin,
                'gradepass' => (float)$record->gradepass,
                'hidden' => (int)$record->hidden,
                'locked' => (int)$record->locked,
            ];
        }
        return ['items' => $items];
    }

    /**
     * Return structure.
     *
     * @return external_single_structure
     */
    public static function execute_returns(): external_single_structure {
        return new external_single_structure([
            'items' => new external_multiple_structure(new external_single_structure([
                'id' => new external_value(PARAM_INT, 'Grade item id'),
                'itemtype' => new external_value(PARAM_ALPHA, 'course, category, mod or manual'),
                'itemmodule' => new external_value(PARAM_PLUGIN, 'Activity type for mod items', VALUE_REQUIRED, null,
                    NULL_ALLOWED),
                'iteminstance' => new external_value(PARAM_INT, 'Activity instance id for mod items', VALUE_REQUIRED, null,
                    NULL_ALLOWED),
                // Raw: Moodle checks returned values strictly, and a name with markup would make
                // PARAM_TEXT refuse the whole answer.
                'itemname' => new external_value(PARAM_RAW, 'Name (null for the course total)', VALUE_REQUIRED, null,
                    NULL_ALLOWED),
                'grademax' => new external_value(PARAM_FLOAT, 'Maximum grade'),
                'grademin' => new external_value(PARAM_FLOAT, 'Minimum grade'),
                'gradepass' => new external_value(PARAM_FLOAT, 'Grade to pass'),
                'hidden' => new external_value(PARAM_INT, '0 shown, 1 hidden, or a time until which it is hidden'),
                'locked' => new external_value(PARAM_INT, '0 unlocked, or the time it was locked'),
            ])),
        ]);
    }
}
