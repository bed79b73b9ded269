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
 * Post-installation steps.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

/**
 * Creates the counter rows the observers increment.
 *
 * @return bool
 */
function xmldb_local_lmsbridge_install() {
    global $DB;
    if (!$DB->record_exists('local_lmsbridge_counter', ['name' => 'refused'])) {
        $DB->insert_record('local_lmsbridge_counter', (object)['name' => 'refused', 'value' => 0, 'timemodified' => 0]);
    }
    return true;
}
