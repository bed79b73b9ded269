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
 * The external API's class names on every supported Moodle version.
 *
 * Moodle 4.2 moved the external API into namespaced classes (\core_external\external_api and
 * friends); 4.1 has them as global classes in lib/externallib.php. The plugin's external
 * functions use the 4.2 names and require this file first, so on 4.1 the new names are
 * aliases of the old classes and on 4.2 and later nothing happens.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

if (!class_exists('core_external\external_api')) {
    global $CFG;
    require_once($CFG->libdir . '/externallib.php');
    foreach ([
        'external_api',
        'external_description',
        'external_value',
        'external_single_structure',
        'external_multiple_structure',
        'external_function_parameters',
        'external_warnings',
    ] as $legacyclass) {
        if (!class_exists('core_external\\' . $legacyclass, false)) {
            class_alias($legacyclass, 'core_external\\' . $legacyclass);
        }
    }
}
