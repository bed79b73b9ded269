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
 * Web service functions lmsbridge calls to fill what events missed.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$functions = [
    'local_lmsbridge_get_course_completions' => [
        'classname' => 'local_lmsbridge\external\get_course_completions',
        'description' => 'Course completions of a course since a time.',
        'type' => 'read',
        'capabilities' => 'local/lmsbridge:pull',
    ],
    'local_lmsbridge_get_activity_completions' => [
        'classname' => 'local_lmsbridge\external\get_activity_completions',
        'description' => 'Activity completion states of a course changed since a time.',
        'type' => 'read',
        'capabilities' => 'local/lmsbridge:pull',
    ],
    'local_lmsbridge_get_grade_items' => [
        'classname' => 'local_lmsbridge\external\get_grade_items',
        'description' => 'Grade items of a course with their settings.',
        'type' => 'read',
        'capabilities' => 'local/lmsbridge:pull',
    ],
    'local_lmsbridge_get_enrolments' => [
        'classname' => 'local_lmsbridge\external\get_enrolments',
        'description' => 'Enrolments of a course with status, dates and roles.',
        'type' => 'read',
        'capabilities' => 'local/lmsbridge:pull',
    ],
];

$services = [
    'lmsbridge' => [
        'functions' => [
            'local_lmsbridge_get_course_completions',
            'local_lmsbridge_get_activity_completions',
            'local_lmsbridge_get_grade_items',
            'local_lmsbridge_get_enrolments',
        ],
        'shortname' => 'local_lmsbridge',
        'restrictedusers' => 1,
        'enabled' => 0,
        'downloadfiles' => 0,
        'uploadfiles' => 0,
    ],
];
