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
 * Event observers.
 *
 * Every observer is external ('internal' => false): Moodle calls it only after the database
 * transaction that triggered the event commits, so a rolled-back change is never sent. The
 * observers only write an outbox row; the scheduled task sends.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$observers = [
    [
        'eventname' => '\core\event\course_completed',
        'callback' => '\local_lmsbridge\observer::course_completed',
        'internal' => false,
    ],
    [
        'eventname' => '\core\event\course_module_completion_updated',
        'callback' => '\local_lmsbridge\observer::course_module_completion_updated',
        'internal' => false,
    ],
    [
        'eventname' => '\core\event\user_enrolment_created',
        'callback' => '\local_lmsbridge\observer::user_enrolment_changed',
        'internal' => false,
    ],
    [
        'eventname' => '\core\event\user_enrolment_updated',
        'callback' => '\local_lmsbridge\observer::user_enrolment_changed',
        'internal' => false,
    ],
    [
        'eventname' => '\core\event\user_enrolment_deleted',
        'callback' => '\local_lmsbridge\observer::user_enrolment_changed',
        'internal' => false,
    ],
    // Moodle assigns a new enrolment's role after user_enrolment_created: role changes in a
    // course are sent as updates of the user's enrolments there.
    [
        'eventname' => '\core\event\role_assigned',
        'callback' => '\local_lmsbridge\observer::role_changed',
        'internal' => false,
    ],
    [
        'eventname' => '\core\event\role_unassigned',
        'callback' => '\local_lmsbridge\observer::role_changed',
        'internal' => false,
    ],
    [
        'eventname' => '\core\event\user_graded',
        'callback' => '\local_lmsbridge\observer::user_graded',
        'internal' => false,
    ],
    [
        'eventname' => '\core\event\course_module_created',
        'callback' => '\local_lmsbridge\observer::course_module_created',
        'internal' => false,
    ],
    [
        'eventname' => '\core\event\user_deleted',
        'callback' => '\local_lmsbridge\observer::user_deleted',
        'internal' => false,
    ],
];
