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
 * Privacy provider.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge\privacy;

use core_privacy\local\metadata\collection;
use core_privacy\local\request\approved_contextlist;
use core_privacy\local\request\approved_userlist;
use core_privacy\local\request\contextlist;
use core_privacy\local\request\transform;
use core_privacy\local\request\userlist;
use core_privacy\local\request\writer;
use local_lmsbridge\local\payload_builder;

/**
 * What the plugin stores (the outbox) and sends (events to lmsbridge), with export and deletion.
 *
 * Outbox rows belong to the course context of their course; rows without a course (a deleted
 * user) to the user's context. A user is in a row as its subject (userid) or as the grader who
 * changed a grade (actorid): a subject's rows are deleted, a grader is removed from rows about
 * others, which stay so the learners' events still reach lmsbridge.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class provider implements
        \core_privacy\local\metadata\provider,
        \core_privacy\local\request\plugin\provider,
        \core_privacy\local\request\core_userlist_provider {

    /** @var string */
    const TABLE = 'local_lmsbridge_outbox';

    /**
     * Stored and sent personal data.
     *
     * @param collection $collection
     * @return collection
     */
    public static function get_metadata(collection $collection): collection {
        $collection->add_database_table(self::TABLE, [
            'userid' => 'privacy:metadata:local_lmsbridge_outbox:userid',
            'actorid' => 'privacy:metadata:local_lmsbridge_outbox:actorid',
            'courseid' => 'privacy:metadata:local_lmsbridge_outbox:courseid',
            'cmid' => 'privacy:metadata:local_lmsbridge_outbox:cmid',
            'name' => 'privacy:metadata:local_lmsbridge_outbox:name',
            'payload' => 'privacy:metadata:local_lmsbridge_outbox:payload',
            'timecreated' => 'privacy:metadata:local_lmsbridge_outbox:timecreated',
        ], 'privacy:metadata:local_lmsbridge_outbox');

        // Exactly what an event carries about a person; see payload_builder for each event.
        $collection->add_external_location_link('lmsbridge', [
            'user_id' => 'privacy:metadata:lmsbridge:user_id',
            'course_id' => 'privacy:metadata:lmsbridge:course_id',
            'cm_id' => 'privacy:metadata:lmsbridge:cm_id',
            'occurred_at' => 'privacy:metadata:lmsbridge:occurred_at',
            'completion' => 'privacy:metadata:lmsbridge:completion',
            'enrolment' => 'privacy:metadata:lmsbridge:enrolment',
            'grade' => 'privacy:metadata:lmsbridge:grade',
            'grader_id' => 'privacy:metadata:lmsbridge:grader_id',
        ], 'privacy:metadata:lmsbridge');

        return $collection;
    }

    /**
     * Contexts holding outbox rows of a user.
     *
     * @param int $userid
     * @return contextlist
     */
    public static function get_contexts_for_userid(int $userid): contextlist {
        $contextlist = new contextlist();
        $contextlist->add_from_sql("
            SELECT ctx.id
              FROM {context} ctx
              JOIN {" . self::TABLE . "} o ON o.courseid = ctx.instanceid AND ctx.contextlevel = :courselevel
             WHERE o.courseid > 0 AND (o.userid = :userid OR o.actorid = :actorid)",
            ['courselevel' => CONTEXT_COURSE, 'userid' => $userid, 'actorid' => $userid]);
        $contextlist->add_from_sql("
            SELECT ctx.id
              FROM {context} ctx
              JOIN {" . self::TABLE . "} o ON o.userid = ctx.instanceid AND ctx.contextlevel = :userlevel
             WHERE o.courseid = 0 AND o.userid = :userid",
            ['userlevel' => CONTEXT_USER, 'userid' => $userid]);
        return $contextlist;
    }

    /**
     * Users with outbox rows in a context.
     *
     * @param userlist $userlist
     */
    public static function get_users_in_context(userlist $userlist) {
        $context = $userlist->get_context();
        if ($context->contextlevel == CONTEXT_COURSE) {
            $params = ['courseid' => $context->instanceid];
            $userlist->add_from_sql('userid',
                'SELECT userid FROM {' . self::TABLE . '} WHERE courseid = :courseid AND userid > 0', $params);
            $userlist->add_from_sql('actorid',
                'SELECT actorid FROM {' . self::TABLE . '} WHERE courseid = :courseid AND actorid > 0', $params);
        } else if ($context->contextlevel == CONTEXT_USER) {
            $userlist->add_from_sql('userid',
                'SELECT userid FROM {' . self::TABLE . '} WHERE courseid = 0 AND userid = :userid',
                ['userid' => $context->instanceid]);
        }
    }

    /**
     * Exports a user's outbox rows.
     *
     * @param approved_contextlist $contextlist
     */
    public static function export_user_data(approved_contextlist $contextlist) {
        $userid = $contextlist->get_user()->id;
        foreach ($contextlist->get_contexts() as $context) {
            $rows = self::rows_of_user($context, $userid);
            if (empty($rows)) {
                continue;
            }
            $events = [];
            foreach ($rows as $row) {
                $events[] = (object)[
                    'event' => $row->name,
                    'about_you' => transform::yesno((int)$row->userid === (int)$userid),
                    'activity' => $row->cmid,
                    'details' => json_decode($row->payload),
                    'time' => transform::datetime($row->timecreated),
                ];
            }
            writer::with_context($context)->export_data([get_string('privacy:outboxpath', 'local_lmsbridge')],
                (object)['events' => $events]);
        }
    }

    /**
     * Deletes every outbox row of a context.
     *
     * @param \context $context
     */
    public static function delete_data_for_all_users_in_context(\context $context) {
        global $DB;
        if ($context->contextlevel == CONTEXT_COURSE) {
            $DB->delete_records(self::TABLE, ['courseid' => $context->instanceid]);
        } else if ($context->contextlevel == CONTEXT_USER) {
            $DB->delete_records(self::TABLE, ['courseid' => 0, 'userid' => $context->instanceid]);
        }
    }

    /**
     * Deletes a user's outbox rows in the approved contexts.
     *
     * @param approved_contextlist $contextlist
     */
    public static function delete_data_for_user(approved_contextlist $contextlist) {
        $userid = (int)$contextlist->get_user()->id;
        foreach ($contextlist->get_contexts() as $context) {
            self::delete_users($context, [$userid]);
        }
    }

    /**
     * Deletes the outbox rows of some users in one context.
     *
     * @param approved_userlist $userlist
     */
    public static function delete_data_for_users(approved_userlist $userlist) {
        self::delete_users($userlist->get_context(), array_map('intval', $userlist->get_userids()));
    }

    /**
     * Rows a user is in, in one context.
     *
     * @param \context $context
     * @param int $userid
     * @return \stdClass[]
     */
    private static function rows_of_user(\context $context, int $userid): array {
        global $DB;
        if ($context->contextlevel == CONTEXT_COURSE) {
            return $DB->get_records_select(self::TABLE, 'courseid = :courseid AND (userid = :userid OR actorid = :actorid)',
                ['courseid' => $context->instanceid, 'userid' => $userid, 'actorid' => $userid], 'id ASC');
        }
        if ($context->contextlevel == CONTEXT_USER && (int)$context->instanceid === $userid) {
            return $DB->get_records(self::TABLE, ['courseid' => 0, 'userid' => $userid], 'id ASC');
        }
        return [];
    }

    /**
     * Deletes the rows about the users and removes them as graders from rows about others.
     *
     * @param \context $context
     * @param int[] $userids
     */
    private static function delete_users(\context $context, array $userids): void {
        global $DB;
        if (empty($userids)) {
            return;
        }
        if ($context->contextlevel == CONTEXT_USER) {
            if (in_array((int)$context->instanceid, $userids, true)) {
                $DB->delete_records(self::TABLE, ['courseid' => 0, 'userid' => $context->instanceid]);
            }
            return;
        }
        if ($context->contextlevel != CONTEXT_COURSE) {
            return;
        }
        [$insql, $inparams] = $DB->get_in_or_equal($userids, SQL_PARAMS_NAMED);
        $params = array_merge($inparams, ['courseid' => $context->instanceid]);
        $DB->delete_records_select(self::TABLE, "courseid = :courseid AND userid $insql", $params);
        $graded = $DB->get_records_select(self::TABLE, "courseid = :courseid AND actorid $insql", $params, 'id ASC',
            'id, payload');
        foreach ($graded as $row) {
            $DB->update_record(self::TABLE, (object)[
                'id' => $row->id,
                'actorid' => 0,
                'payload' => payload_builder::without_grader($row->payload),
            ]);
        }
    }
}
