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
 * The sender's settings.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\local;

/**
 * Everything the sender needs to know about this site and its pairing with lmsbridge.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
final class sender_config {

    /** @var string lmsbridge's base URL, e.g. https://lti.example.edu/ */
    public $url = '';

    /** @var string the site id from pairing (ms_…) */
    public $siteid = '';

    /** @var string the site secret from pairing */
    public $secret = '';

    /** @var string Moodle's wwwroot */
    public $siteurl = '';

    /** @var int this plugin's version */
    public $pluginversion = 0;

    /** @var string Moodle's release string */
    public $moodlerelease = '';

    /** @var int events per request */
    public $batchsize = 200;

    /** @var int bytes per request body */
    public $maxbytes = batcher::MAX_BYTES;

    /** @var int requests per run: bounds one cron run when the backlog is large */
    public $maxrequests = 20;

    /** @var int seconds one request may take */
    public $timeout = 30;

    /**
     * The events endpoint.
     *
     * @return string
     */
    public function endpoint(): string {
        return rtrim($this->url, '/') . '/moodle/events';
    }

    /**
     * Whether the settings are complete enough to send anything.
     *
     * @return bool
     */
    public function is_complete(): bool {
        return $this->url !== '' && $this->siteid !== '' && $this->secret !== '';
    }
}
