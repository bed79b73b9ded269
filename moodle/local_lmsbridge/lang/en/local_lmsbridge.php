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
 * English strings for local_lmsbridge.
 *
 * @package    local_lmsbridge
 * @category   string
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$string['batchsize'] = 'Events per request';
$string['batchsize_desc'] = 'How many events one request to lmsbridge carries (1 to 500). Requests also stay under 900 KiB.';
$string['enabled'] = 'Send events';
$string['enabled_desc'] = 'Record course completions, activity completions, enrolments, grade changes, new LTI activities and deleted users, and send them to lmsbridge every minute. Events are recorded only while this is on.';
$string['lmsbridge:pull'] = 'Read completions, grade items and enrolments of a course through the lmsbridge web service functions';
$string['lmsbridge:viewstatus'] = 'View the lmsbridge event delivery status';
$string['outboxcap'] = 'Outbox limit';
$string['outboxcap_desc'] = 'The most events kept waiting. When the outbox is full, events given up are removed first, oldest first; events still waiting are never removed, so new events are refused instead, counted, and shown on the status page. 0 means no limit.';
$string['pluginname'] = 'lmsbridge';
$string['privacy:metadata:lmsbridge'] = 'Events about learners are sent to the lmsbridge service configured by the site administrator, so the tool connected over LTI knows about completions, enrolments and grades it cannot see through LTI.';
$string['privacy:metadata:lmsbridge:cm_id'] = 'The activity the event is about.';
$string['privacy:metadata:lmsbridge:completion'] = 'Course and activity completion states and times.';
$string['privacy:metadata:lmsbridge:course_id'] = 'The course the event is about.';
$string['privacy:metadata:lmsbridge:enrolment'] = 'Enrolment method, status, start and end times, and roles in the course.';
$string['privacy:metadata:lmsbridge:grade'] = 'The grade item, the grade, its maximum, whether it was overridden, and the feedback.';
$string['privacy:metadata:lmsbridge:grader_id'] = 'The id of the user who last changed the grade.';
$string['privacy:metadata:lmsbridge:occurred_at'] = 'When the event happened.';
$string['privacy:metadata:lmsbridge:user_id'] = 'The id of the user the event is about. When a user is deleted, only this id is sent.';
$string['privacy:metadata:local_lmsbridge_outbox'] = 'Events waiting to be sent to lmsbridge, and events that could not be sent.';
$string['privacy:metadata:local_lmsbridge_outbox:actorid'] = 'The user who made the change (the grader of a grade).';
$string['privacy:metadata:local_lmsbridge_outbox:cmid'] = 'The activity the event is about.';
$string['privacy:metadata:local_lmsbridge_outbox:courseid'] = 'The course the event is about.';
$string['privacy:metadata:local_lmsbridge_outbox:name'] = 'The event.';
$string['privacy:metadata:local_lmsbridge_outbox:payload'] = 'What is sent about the event: completion, enrolment or grade details.';
$string['privacy:metadata:local_lmsbridge_outbox:timecreated'] = 'When the event happened.';
$string['privacy:metadata:local_lmsbridge_outbox:userid'] = 'The user the event is about.';
$string['privacy:outboxpath'] = 'lmsbridge outbox';
$string['secret'] = 'Site secret';
$string['secret_desc'] = 'The secret <code>lmsbridge moodle pair</code> printed. It signs every request; lmsbridge shows it only once.';
$string['sendevents'] = 'Send events to lmsbridge';
$string['settings'] = 'Settings';
$string['siteid'] = 'Site id';
$string['siteid_desc'] = 'The site id <code>lmsbridge moodle pair</code> printed (starts with <code>ms_</code>).';
$string['status'] = 'Event delivery status';
$string['status_col_attempts'] = 'Attempts';
$string['status_col_course'] = 'Course id';
$string['status_col_error'] = 'Reason';
$string['status_col_event'] = 'Event';
$string['status_col_time'] = 'Happened';
$string['status_col_user'] = 'User id';
$string['status_dropped'] = 'Events refused because the outbox was full';
$string['status_failed'] = 'Given up (kept here, never resent)';
$string['status_lastdropped'] = 'Last refused';
$string['status_lasterror'] = 'Last error';
$string['status_lastrun'] = 'Last run';
$string['status_lastsuccess'] = 'Last delivery';
$string['status_never'] = 'Never';
$string['status_nextattempt'] = 'Next attempt';
$string['status_notconfigured'] = 'Sending is off or not configured: set the lmsbridge URL, site id and secret, and turn on sending.';
$string['status_oldestpending'] = 'Oldest waiting event';
$string['status_pending'] = 'Waiting to be sent';
$string['status_recentfailed'] = 'Recently given up';
$string['url'] = 'lmsbridge URL';
$string['url_desc'] = 'The public address of lmsbridge, for example <code>https://lti.example.edu/</code>. Events go to its <code>/moodle/events</code>. Moodle\'s HTTP security settings must allow this host and port.';
