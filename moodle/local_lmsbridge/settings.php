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
 * Admin settings and the status page's place in the admin tree.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$ADMIN->add('localplugins', new admin_category('local_lmsbridge_category',
    new lang_string('pluginname', 'local_lmsbridge')));

if ($hassiteconfig) {
    $settings = new admin_settingpage('local_lmsbridge', new lang_string('settings', 'local_lmsbridge'));

    if ($ADMIN->fulltree) {
        $settings->add(new admin_setting_configcheckbox('local_lmsbridge/enabled',
            new lang_string('enabled', 'local_lmsbridge'),
            new lang_string('enabled_desc', 'local_lmsbridge'), 0));

        $settings->add(new admin_setting_configtext('local_lmsbridge/url',
            new lang_string('url', 'local_lmsbridge'),
            new lang_string('url_desc', 'local_lmsbridge'), '', PARAM_URL));

        $settings->add(new admin_setting_configtext('local_lmsbridge/siteid',
            new lang_string('siteid', 'local_lmsbridge'),
            new lang_string('siteid_desc', 'local_lmsbridge'), '', PARAM_ALPHANUMEXT));

        $settings->add(new admin_setting_configpasswordunmask('local_lmsbridge/secret',
            new lang_string('secret', 'local_lmsbridge'),
            new lang_string('secret_desc', 'local_lmsbridge'), ''));

        $settings->add(new admin_setting_configtext('local_lmsbridge/batchsize',
            new lang_string('batchsize', 'local_lmsbridge'),
            new lang_string('batchsize_desc', 'local_lmsbridge'), 200, PARAM_INT));

        $settings->add(new admin_setting_configtext('local_lmsbridge/outboxcap',
            new lang_string('outboxcap', 'local_lmsbridge'),
            new lang_string('outboxcap_desc', 'local_lmsbridge'), 100000, PARAM_INT));
    }

    $ADMIN->add('local_lmsbridge_category', $settings);
}

// Outside the site-config check: a role with only the capability may open the status page.
$ADMIN->add('local_lmsbridge_category', new admin_externalpage('local_lmsbridge_status',
    new lang_string('status', 'local_lmsbridge'),
    new moodle_url('/local/lmsbridge/index.php'),
    'local/lmsbridge:viewstatus'));
