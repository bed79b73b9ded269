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
 * The send task.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\task;

use local_lmsbridge\local\db_outbox;
use local_lmsbridge\local\http\moodle_curl_transport;
use local_lmsbridge\local\sender;
use local_lmsbridge\local\sender_config;

/**
 * Every minute: sends due outbox rows to lmsbridge and records how it went for the status page.
 *
 * Moodle's task lock keeps two runs from overlapping, so a row is never in two requests at once.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class send_events extends \core\task\scheduled_task {

    /**
     * Name shown in the task list.
     *
     * @return string
     */
    public function get_name() {
        return get_string('sendevents', 'local_lmsbridge');
    }

    /**
     * Runs one send.
     */
    public function execute() {
        global $CFG;
        $settings = get_config('local_lmsbridge');
        if (empty($settings->enabled)) {
            mtrace('lmsbridge: sending is off');
            return;
        }
        $config = new sender_config();
        $config->url = trim((string)($settings->url ?? ''));
        $config->siteid = trim((string)($settings->siteid ?? ''));
        $config->secret = trim((string)($settings->secret ?? ''));
        $config->siteurl = $CFG->wwwroot;
        $config->pluginversion = (int)($settings->version ?? 0);
        $config->moodlerelease = (string)$CFG->release;
        $config->batchsize = (int)($settings->batchsize ?? 0) > 0 ? (int)$settings->batchsize : 200;

        $now = time();
        $report = (new sender(new db_outbox(), new moodle_curl_transport(), $config))->run($now);

        set_config('lastrun', $now, 'local_lmsbridge');
        if ($report['success']) {
            set_config('lastsuccess', $now, 'local_lmsbridge');
        }
        if ($report['error'] !== null) {
            set_config('lasterror', $report['error'], 'local_lmsbridge');
            set_config('lasterrortime', $now, 'local_lmsbridge');
        }
        mtrace(sprintf('lmsbridge: %d requests, %d events sent, %d delivered, %d retried later, %d given up%s',
            $report['requests'], $report['sent'], $report['accepted'], $report['retried'], $report['failed'],
            $report['error'] === null ? '' : '; last error: ' . $report['error']));
        $refused = db_outbox::refused();
        if ($refused && $refused->value > 0) {
            mtrace('lmsbridge: ' . $refused->value . ' events refused so far because the outbox was full');
        }
    }
}
