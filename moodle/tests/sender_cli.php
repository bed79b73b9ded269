<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.
//
// Runs the plugin's sender, outside Moodle, against a real lmsbridge: the events are built by
// payload_builder from event data shaped like Moodle's, kept in a memory outbox, signed and
// posted over PHP's curl. Prints one JSON object: the sender's report and the outbox after it.
//
//   php sender_cli.php --url URL --site ID --secret SECRET --state FILE [--resend] [--course N --user N]
//
// Without --resend: builds one event of each kind, sends them, and writes them to FILE.
// With --resend: loads the events from FILE with their ids and sends them again, as after an
// answer lost on the way back.

require_once(__DIR__ . '/bootstrap.php');

use local_lmsbridge\local\http\curl_transport;
use local_lmsbridge\local\payload_builder;
use local_lmsbridge\local\sender;
use local_lmsbridge\local\sender_config;
use local_lmsbridge_test\memory_outbox;

$options = getopt('', ['url:', 'site:', 'secret:', 'state:', 'resend', 'course:', 'user:', 'batch:']);
foreach (['url', 'site', 'secret', 'state'] as $required) {
    if (!isset($options[$required])) {
        fwrite(STDERR, "missing --$required\n");
        exit(2);
    }
}
$course = (int)($options['course'] ?? 12);
$user = (int)($options['user'] ?? 34);
$now = time();

$outbox = new memory_outbox();
if (isset($options['resend'])) {
    $saved = json_decode(file_get_contents($options['state']), true);
    foreach ($saved as $event) {
        $outbox->add($event['built'], $event['eventid']);
    }
} else {
    $teacher = $user + 1000;
    $samples = [
        [['eventname' => '\core\event\course_completed', 'objectid' => 5], ['timecompleted' => $now - 5]],
        [['eventname' => '\core\event\course_module_completion_updated', 'objectid' => 77, 'contextinstanceid' => 901,
            'other' => ['relateduserid' => $user, 'completionstate' => 1]],
            ['modname' => 'lti', 'instance' => 45, 'completionstate' => 1, 'timemodified' => $now - 20]],
        [['eventname' => '\core\event\user_enrolment_created', 'objectid' => 300, 'other' => ['enrol' => 'manual']],
            ['userenrolment' => ['status' => 0, 'timestart' => $now - 86400, 'timeend' => 0], 'roles' => ['student']]],
        [['eventname' => '\core\event\user_enrolment_updated', 'objectid' => 300, 'other' => ['enrol' => 'manual']],
            ['userenrolment' => ['status' => 1, 'timestart' => $now - 86400, 'timeend' => 0], 'roles' => ['student']]],
        [['eventname' => '\core\event\user_graded', 'objectid' => 555, 'userid' => $teacher,
            'other' => ['itemid' => 61, 'overridden' => true, 'finalgrade' => 7.5]],
            ['grade' => ['finalgrade' => 7.5, 'rawgrademax' => 10, 'overridden' => $now, 'usermodified' => $teacher,
                'feedback' => 'Overridden after review'],
             'item' => ['id' => 61, 'itemtype' => 'mod', 'itemmodule' => 'lti', 'iteminstance' => 45,
                'itemname' => 'Quiz engine', 'grademax' => 10]]],
        [['eventname' => '\core\event\course_module_created', 'objectid' => 902, 'relateduserid' => null,
            'userid' => $teacher, 'other' => ['modulename' => 'lti', 'instanceid' => 46, 'name' => 'Second activity']], []],
        [['eventname' => '\core\event\user_enrolment_deleted', 'objectid' => 301,
            'relateduserid' => $user + 1,
            'other' => ['enrol' => 'self', 'userenrolment' => ['status' => 0, 'timestart' => 0, 'timeend' => 0]]],
            ['roles' => []]],
        [['eventname' => '\core\event\user_deleted', 'objectid' => $user + 2, 'relateduserid' => $user + 2,
            'courseid' => 0], []],
    ];
    $saved = [];
    foreach ($samples as $i => [$data, $extra]) {
        $data += ['courseid' => $course, 'relateduserid' => $user, 'userid' => 2, 'contextinstanceid' => 0,
            'timecreated' => $now - 60 + $i];
        $built = payload_builder::build($data, $extra);
        if ($built === null) {
            fwrite(STDERR, 'sample ' . $data['eventname'] . " was not built\n");
            exit(1);
        }
        $row = $outbox->add($built);
        $saved[] = ['eventid' => $row->eventid, 'built' => $built];
    }
    file_put_contents($options['state'], json_encode($saved));
}

$config = new sender_config();
$config->url = $options['url'];
$config->siteid = $options['site'];
$config->secret = $options['secret'];
$config->siteurl = 'https://moodle.example.edu';
$config->pluginversion = 2026112800;
$config->moodlerelease = '4.5.1 (Build: 20250101)';
$config->batchsize = (int)($options['batch'] ?? 200);
$config->timeout = 10;

$report = (new sender($outbox, new curl_transport(), $config))->run($now);
echo json_encode([
    'report' => $report,
    'outbox' => array_values(array_map(function ($row) {
        return ['eventid' => $row->eventid, 'name' => $row->name, 'status' => $row->status,
            'attempts' => $row->attempts, 'lasterror' => $row->lasterror];
    }, $outbox->rows)),
    'eventids' => array_column($saved, 'eventid'),
], JSON_UNESCAPED_SLASHES) . "\n";
