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
 * Event delivery status: outbox counts, the last delivery and the last error.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

require_once(__DIR__ . '/../../config.php');
require_once($CFG->libdir . '/adminlib.php');

use local_lmsbridge\local\db_outbox;
use local_lmsbridge\local\outbox;

admin_externalpage_setup('local_lmsbridge_status');
require_capability('local/lmsbridge:viewstatus', context_system::instance());

$settings = get_config('local_lmsbridge');
$counts = $DB->get_records_sql_menu('SELECT status, COUNT(1) FROM {local_lmsbridge_outbox} GROUP BY status');
$pending = $DB->get_record_sql('SELECT MIN(timecreated) AS oldest, MIN(nextattempt) AS nextattempt
                                  FROM {local_lmsbridge_outbox} WHERE status = :status',
    ['status' => outbox::STATUS_PENDING]);
$refused = db_outbox::refused();

$time = function ($value): string {
    return empty($value) ? get_string('status_never', 'local_lmsbridge') : userdate((int)$value);
};

echo $OUTPUT->header();
echo $OUTPUT->heading(get_string('status', 'local_lmsbridge'));

if (empty($settings->enabled) || empty($settings->url) || empty($settings->siteid) || empty($settings->secret)) {
    echo $OUTPUT->notification(get_string('status_notconfigured', 'local_lmsbridge'), 'warning');
}

$summary = new html_table();
$summary->attributes['class'] = 'generaltable';
$summary->data = [
    [get_string('status_pending', 'local_lmsbridge'), (int)($counts[outbox::STATUS_PENDING] ?? 0)],
    [get_string('status_failed', 'local_lmsbridge'), (int)($counts[outbox::STATUS_FAILED] ?? 0)],
    [get_string('status_oldestpending', 'local_lmsbridge'), s($time($pending->oldest ?? null))],
    [get_string('status_nextattempt', 'local_lmsbridge'), s($time($pending->nextattempt ?? null))],
    [get_string('status_lastrun', 'local_lmsbridge'), s($time($settings->lastrun ?? null))],
    [get_string('status_lastsuccess', 'local_lmsbridge'), s($time($settings->lastsuccess ?? null))],
    [get_string('status_lasterror', 'local_lmsbridge'), empty($settings->lasterror) ? '-'
        : s($time($settings->lasterrortime ?? null) . ': ' . $settings->lasterror)],
    [get_string('status_dropped', 'local_lmsbridge'), (int)($refused->value ?? 0)],
    [get_string('status_lastdropped', 'local_lmsbridge'), s($time($refused->timemodified ?? null))],
];
echo html_writer::table($summary);

$failed = $DB->get_records('local_lmsbridge_outbox', ['status' => outbox::STATUS_FAILED], 'id DESC',
    'id, eventid, name, courseid, userid, attempts, lasterror, timecreated', 0, 20);
if (!empty($failed)) {
    echo $OUTPUT->heading(get_string('status_recentfailed', 'local_lmsbridge'), 3);
    $table = new html_table();
    $table->attributes['class'] = 'generaltable';
    $table->head = [
        get_string('status_col_time', 'local_lmsbridge'),
        get_string('status_col_event', 'local_lmsbridge'),
        get_string('status_col_course', 'local_lmsbridge'),
        get_string('status_col_user', 'local_lmsbridge'),
        get_string('status_col_attempts', 'local_lmsbridge'),
        get_string('status_col_error', 'local_lmsbridge'),
    ];
    foreach ($failed as $row) {
        $table->data[] = [
            s(userdate((int)$row->timecreated)),
            s($row->name) . html_writer::empty_tag('br') . html_writer::tag('small', s($row->eventid)),
            (int)$row->courseid,
            (int)$row->userid,
            (int)$row->attempts,
            s((string)$row->lasterror),
        ];
    }
    echo html_writer::table($table);
}

echo $OUTPUT->footer();
