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
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_lmsbridge;

use local_lmsbridge\local\db_outbox;
use local_lmsbridge\local\payload_builder;

/**
 * Records observed events in the outbox. No network: the send task does that.
 *
 * Each observer looks up what its event does not carry and hands it with the event data to
 * payload_builder. An observer never throws: a failure to record is reported through
 * debugging() and must not break the teacher's or learner's action that triggered it.
 *
 * @package    local_lmsbridge
 * @copyright  2026 lmsbridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class observer {

    /**
     * A learner completed a course.
     *
     * @param \core\event\course_completed $event
     */
    public static function course_completed(\core\event\course_completed $event): void {
        self::record($event, function () use ($event): array {
            $completion = self::snapshot($event, 'course_completions');
            return ['timecompleted' => $completion->timecompleted ?? null];
        });
    }

    /**
     * An activity's completion state changed for a learner.
     *
     * @param \core\event\course_module_completion_updated $event
     */
    public static function course_module_completion_updated(\core\event\course_module_completion_updated $event): void {
        self::record($event, function () use ($event): array {
            $completion = self::snapshot($event, 'course_modules_completion');
            $cm = get_coursemodule_from_id('', $event->contextinstanceid, 0, false, IGNORE_MISSING);
            return [
                'modname' => $cm->modname ?? null,
                'instance' => $cm->instance ?? null,
                'completionstate' => $completion->completionstate ?? null,
                'timemodified' => $completion->timemodified ?? null,
            ];
        });
    }

    /**
     * An enrolment was created, updated or deleted.
     *
     * @param \core\event\base $event user_enrolment_created, _updated or _deleted
     */
    public static function user_enrolment_changed(\core\event\base $event): void {
        global $DB;
        self::record($event, function () use ($event, $DB): array {
            $extra = ['roles' => []];
            if (!($event instanceof \core\event\user_enrolment_deleted)) {
                // Read now, after the commit, so the row is the enrolment as it stands.
                $ue = $DB->get_record('user_enrolments', ['id' => $event->objectid], 'id, status, timestart, timeend');
                $extra['userenrolment'] = $ue ? (array)$ue : null;
            }
            $extra['roles'] = self::course_roles((int)$event->courseid, (int)$event->relateduserid);
            return $extra;
        });
    }

    /**
     * A role was assigned or unassigned in a course: sent as an update of each of the user's
     * enrolments there, with the roles as they now are.
     *
     * Moodle assigns the role of a new enrolment after user_enrolment_created is triggered, so
     * without this the roles of a fresh enrolment, and any later role change, would never
     * reach lmsbridge.
     *
     * @param \core\event\base $event role_assigned or role_unassigned
     */
    public static function role_changed(\core\event\base $event): void {
        global $DB;
        if ((int)$event->contextlevel !== CONTEXT_COURSE || empty($event->relateduserid)) {
            return;
        }
        try {
            if (!get_config('local_lmsbridge', 'enabled')) {
                return;
            }
            $sql = "SELECT ue.id, ue.status, ue.timestart, ue.timeend, e.enrol
                      FROM {user_enrolments} ue
                      JOIN {enrol} e ON e.id = ue.enrolid
                     WHERE e.courseid = :courseid AND ue.userid = :userid";
            $enrolments = $DB->get_records_sql($sql, ['courseid' => $event->courseid, 'userid' => $event->relateduserid]);
            if (empty($enrolments)) {
                // A role without an enrolment (an "other user"): not an enrolment to report.
                return;
            }
            $roles = self::course_roles((int)$event->courseid, (int)$event->relateduserid);
            foreach ($enrolments as $ue) {
                $built = payload_builder::build([
                    'eventname' => payload_builder::ENROLMENT_UPDATED,
                    'objectid' => $ue->id,
                    'courseid' => $event->courseid,
                    'relateduserid' => $event->relateduserid,
                    'other' => ['enrol' => $ue->enrol],
                    'timecreated' => $event->timecreated,
                ], ['userenrolment' => (array)$ue, 'roles' => $roles]);
                if ($built !== null) {
                    db_outbox::enqueue($built, (int)get_config('local_lmsbridge', 'outboxcap'));
                }
            }
        } catch (\Throwable $e) {
            debugging('local_lmsbridge: could not record ' . $event->eventname . ': ' . $e->getMessage(), DEBUG_NORMAL);
        }
    }

    /**
     * A grade was set or overridden.
     *
     * @param \core\event\user_graded $event
     */
    public static function user_graded(\core\event\user_graded $event): void {
        global $DB;
        self::record($event, function () use ($event, $DB): array {
            $grade = self::snapshot($event, 'grade_grades');
            $itemid = $event->other['itemid'] ?? ($grade->itemid ?? 0);
            $item = $DB->get_record('grade_items', ['id' => $itemid],
                'id, itemtype, itemmodule, iteminstance, itemname, grademax');
            return ['grade' => $grade ? (array)$grade : null, 'item' => $item ? (array)$item : null];
        });
    }

    /**
     * An activity was created (recorded for LTI activities only).
     *
     * @param \core\event\course_module_created $event
     */
    public static function course_module_created(\core\event\course_module_created $event): void {
        self::record($event, function (): array {
            return [];
        });
    }

    /**
     * A user was deleted.
     *
     * @param \core\event\user_deleted $event
     */
    public static function user_deleted(\core\event\user_deleted $event): void {
        self::record($event, function (): array {
            return [];
        });
    }

    /**
     * Short names of the roles a user has in a course itself (not inherited from above).
     *
     * @param int $courseid
     * @param int $userid
     * @return string[]
     */
    private static function course_roles(int $courseid, int $userid): array {
        $context = \context_course::instance($courseid, IGNORE_MISSING);
        $roles = [];
        if ($context) {
            foreach (get_user_roles($context, $userid, false) as $role) {
                $roles[] = $role->shortname;
            }
        }
        return $roles;
    }

    /**
     * Builds and stores the event's outbox row when sending is on.
     *
     * @param \core\event\base $event
     * @param callable $lookup returns the $extra for payload_builder::build
     */
    private static function record(\core\event\base $event, callable $lookup): void {
        try {
            if (!get_config('local_lmsbridge', 'enabled')) {
                return;
            }
            $built = payload_builder::build($event->get_data(), $lookup());
            if ($built === null) {
                return;
            }
            db_outbox::enqueue($built, (int)get_config('local_lmsbridge', 'outboxcap'));
        } catch (\Throwable $e) {
            debugging('local_lmsbridge: could not record ' . $event->eventname . ': ' . $e->getMessage(), DEBUG_NORMAL);
        }
    }

    /**
     * The event's record snapshot, or the row as it is now, or null when it is gone.
     *
     * @param \core\event\base $event
     * @param string $table
     * @return \stdClass|null
     */
    private static function snapshot(\core\event\base $event, string $table): ?\stdClass {
        try {
            $record = $event->get_record_snapshot($table, $event->objectid);
        } catch (\coding_exception $e) {
            return null;
        }
        return $record ?: null;
    }
}
