<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.
//
// The few Moodle APIs the plugin's Moodle-facing classes call (observer, db_outbox, the send
// task, moodle_curl_transport), faked in memory so those classes run under plain PHPUnit. The
// fakes follow Moodle's documented behaviour for the calls used; they prove the glue code runs
// and does what it should with those answers, not that Moodle answers that way.

namespace {

    define('IGNORE_MISSING', 0);
    define('MUST_EXIST', 2);
    define('DEBUG_NORMAL', 15);
    define('SQL_PARAMS_NAMED', 1);
    foreach (['CONTEXT_SYSTEM' => 10, 'CONTEXT_USER' => 30, 'CONTEXT_COURSE' => 50] as $fakename => $fakevalue) {
        if (!defined($fakename)) {
            define($fakename, $fakevalue);
        }
    }

    /** Records of debugging() and mtrace(). */
    final class fake_moodle_log {
        /** @var string[] */
        public static $debugging = [];
        /** @var string[] */
        public static $mtrace = [];
    }

    /** Plugin settings by plugin, then name. */
    final class fake_moodle_config {
        /** @var array */
        public static $values = [];
    }

    /**
     * Tables as arrays of rows. Selects understand "field op :param" joined by AND, which is all
     * the plugin's db_outbox uses.
     */
    final class fake_moodle_database {
        /** @var array table => id => stdClass */
        public $tables = [];
        /** @var int[] */
        private $nextid = [];
        /** @var bool make the next insert fail */
        public $failinsert = false;
        /** @var int reads made */
        public $reads = 0;

        private function matches(\stdClass $row, array $conditions): bool {
            foreach ($conditions as $field => $value) {
                if ((string)$row->$field !== (string)$value) {
                    return false;
                }
            }
            return true;
        }

        private static function clause(\stdClass $row, string $clause, array $params): bool {
            $clause = trim($clause);
            if (preg_match('/^\((.*)\)$/', $clause, $group)) {
                foreach (explode(' OR ', $group[1]) as $alternative) {
                    if (self::clause($row, $alternative, $params)) {
                        return true;
                    }
                }
                return false;
            }
            if (preg_match('/^(\w+) IS NOT NULL$/', $clause, $nn)) {
                return $row->{$nn[1]} !== null;
            }
            if (preg_match('/^(\w+) IN \(([:\w, ]+)\)$/', $clause, $in)) {
                $values = array_map(function ($p) use ($params) {
                    return $params[ltrim(trim($p), ':')];
                }, explode(',', $in[2]));
                return in_array($row->{$in[1]}, $values);
            }
            if (!preg_match('/^(\w+) (=|<=|>=|<|>) :(\w+)$/', $clause, $m)) {
                throw new \coding_exception("fake DB cannot evaluate: $clause");
            }
            $a = $row->{$m[1]};
            $b = $params[$m[3]];
            switch ($m[2]) {
                case '=':
                    return $a == $b;
                case '<=':
                    return $a <= $b;
                case '>=':
                    return $a >= $b;
                case '<':
                    return $a < $b;
                default:
                    return $a > $b;
            }
        }

        private function select(string $table, string $select, array $params): array {
            $rows = [];
            foreach ($this->tables[$table] ?? [] as $row) {
                $ok = true;
                foreach (explode(' AND ', $select) as $clause) {
                    $ok = $ok && self::clause($row, $clause, $params);
                }
                if ($ok) {
                    $rows[$row->id] = clone $row;
                }
            }
            return $rows;
        }

        private static function limit(array $rows, string $sort, int $from, int $limit): array {
            $desc = stripos($sort, 'DESC') !== false;
            $desc ? krsort($rows) : ksort($rows);
            return array_slice($rows, $from, $limit > 0 ? $limit : null, true);
        }

        public function get_records_select($table, $select, array $params = null, $sort = '', $fields = '*',
                $from = 0, $limit = 0) {
            $this->reads++;
            return self::limit($this->select($table, $select, $params ?? []), $sort, $from, $limit);
        }

        public function get_records($table, array $conditions = null, $sort = '', $fields = '*', $from = 0, $limit = 0) {
            $this->reads++;
            $rows = array_filter($this->tables[$table] ?? [], function ($r) use ($conditions) {
                return $this->matches($r, $conditions ?? []);
            });
            return self::limit(array_map(function ($r) {
                return clone $r;
            }, $rows), $sort, $from, $limit);
        }

        public function get_record($table, array $conditions, $fields = '*') {
            $rows = $this->get_records($table, $conditions);
            return $rows ? reset($rows) : false;
        }

        public function record_exists($table, array $conditions) {
            return (bool)$this->get_record($table, $conditions);
        }

        public function count_records($table, array $conditions = null) {
            return count($this->get_records($table, $conditions));
        }

        public function insert_record($table, $dataobject) {
            if ($this->failinsert) {
                throw new \dml_exception('insert failed');
            }
            $id = $this->nextid[$table] = ($this->nextid[$table] ?? 0) + 1;
            $row = clone (object)$dataobject;
            $row->id = $id;
            $this->tables[$table][$id] = $row;
            return $id;
        }

        public function update_record($table, $dataobject) {
            foreach ((array)$dataobject as $field => $value) {
                $this->tables[$table][$dataobject->id]->$field = $value;
            }
            return true;
        }

        public function delete_records_list($table, $field, array $values) {
            foreach ($this->tables[$table] ?? [] as $id => $row) {
                if (in_array($row->$field, $values)) {
                    unset($this->tables[$table][$id]);
                }
            }
            return true;
        }

        /** @var callable|null function (string $sql, array $params): array, for the few joins the plugin runs */
        public $sqlhandler = null;

        public function get_records_sql($sql, array $params = null) {
            $this->reads++;
            if ($this->sqlhandler === null) {
                throw new \coding_exception("fake DB cannot run: $sql");
            }
            return ($this->sqlhandler)($sql, $params ?? []);
        }

        public function get_recordset_sql($sql, array $params = null) {
            return new fake_moodle_recordset($this->get_records_sql($sql, $params));
        }

        public function get_in_or_equal($items, $type = SQL_PARAMS_NAMED) {
            $names = [];
            $params = [];
            foreach (array_values((array)$items) as $i => $item) {
                $names[] = ':in' . $i;
                $params['in' . $i] = $item;
            }
            return ['IN (' . implode(',', $names) . ')', $params];
        }

        public function delete_records_select($table, $select, array $params = null) {
            foreach (array_keys($this->select($table, $select, $params ?? [])) as $id) {
                unset($this->tables[$table][$id]);
            }
            return true;
        }

        public function delete_records($table, array $conditions = null) {
            foreach ($this->get_records($table, $conditions) as $id => $row) {
                unset($this->tables[$table][$id]);
            }
            return true;
        }

        public function execute($sql, array $params = null) {
            if (!preg_match('/^UPDATE \{(\w+)\} SET value = value \+ 1, timemodified = :now WHERE name = :name$/', $sql, $m)) {
                throw new \coding_exception("fake DB cannot execute: $sql");
            }
            foreach ($this->tables[$m[1]] ?? [] as $row) {
                if ($row->name === $params['name']) {
                    $row->value++;
                    $row->timemodified = $params['now'];
                }
            }
            return true;
        }
    }

    /** A recordset: iterable, closed after use. */
    final class fake_moodle_recordset extends \ArrayIterator {
        /** @var bool */
        public $closed = false;

        public function close() {
            $this->closed = true;
        }
    }

    /** Capabilities the faked current user has, by name; and what was checked. */
    final class fake_moodle_access {
        /** @var string[] */
        public static $granted = [];
        /** @var array[] capability, context id */
        public static $checked = [];
    }

    function require_capability($capability, $context) {
        fake_moodle_access::$checked[] = [$capability, $context->id];
        if (!in_array($capability, fake_moodle_access::$granted, true)) {
            throw new required_capability_exception($capability);
        }
    }

    class required_capability_exception extends moodle_exception {
    }

    define('PARAM_INT', 'int');
    define('PARAM_RAW', 'raw');
    define('PARAM_TEXT', 'text');
    define('PARAM_ALPHA', 'alpha');
    define('PARAM_PLUGIN', 'plugin');
    define('PARAM_FLOAT', 'float');
    define('PARAM_ALPHANUMEXT', 'alphanumext');
    define('VALUE_REQUIRED', 1);
    define('VALUE_DEFAULT', 0);
    define('NULL_ALLOWED', true);
    define('NULL_NOT_ALLOWED', false);

    class moodle_exception extends \Exception {
    }

    class coding_exception extends moodle_exception {
    }

    class dml_exception extends moodle_exception {
    }

    /** Moodle's curl class: the answer comes from a callable the test sets. */
    class curl {
        /** @var callable function (string $url, string[] $headers, string $body): array [status, headers, body] */
        public static $answer;
        /** @var array[] requests */
        public static $requests = [];
        /** @var string */
        public $error = '';
        /** @var string[] */
        private $headers = [];
        /** @var array */
        private $info = [];
        /** @var array */
        private $response = [];

        public function setHeader($header) {
            $this->headers = array_merge($this->headers, (array)$header);
        }

        public function post($url, $params = '', $options = []) {
            self::$requests[] = ['url' => $url, 'headers' => $this->headers, 'body' => $params, 'options' => $options];
            [$status, $headers, $body] = (self::$answer)($url, $this->headers, $params);
            $this->info = ['http_code' => $status];
            $this->response = $headers;
            return $body;
        }

        public function get_errno() {
            return 0;
        }

        public function get_info() {
            return $this->info;
        }

        public function getResponse() {
            return $this->response;
        }
    }

    abstract class context {
        /** @var int */
        public $id;
        /** @var int */
        public $instanceid;
        /** @var int */
        public $contextlevel;
    }

    class context_course extends context {
        public static function instance($courseid, $strictness = MUST_EXIST) {
            $c = new context_course();
            $c->instanceid = (int)$courseid;
            $c->id = 1000 + (int)$courseid;
            $c->contextlevel = CONTEXT_COURSE;
            return $c;
        }
    }

    class context_user extends context {
        public static function instance($userid, $strictness = MUST_EXIST) {
            $c = new context_user();
            $c->instanceid = (int)$userid;
            $c->id = 5000 + (int)$userid;
            $c->contextlevel = CONTEXT_USER;
            return $c;
        }
    }

    function get_config($plugin, $name = null) {
        $values = fake_moodle_config::$values[$plugin] ?? [];
        if ($name === null) {
            return (object)$values;
        }
        return $values[$name] ?? false;
    }

    function set_config($name, $value, $plugin = null) {
        fake_moodle_config::$values[$plugin][$name] = (string)$value;
        return true;
    }

    function debugging($message = '', $level = DEBUG_NORMAL) {
        fake_moodle_log::$debugging[] = $message;
        return true;
    }

    function mtrace($string) {
        fake_moodle_log::$mtrace[] = $string;
    }

    function get_string($identifier, $component = '') {
        return "[[$identifier]]";
    }

    /** @var array course module id => (object)[modname, instance] */
    $GLOBALS['FAKE_COURSE_MODULES'] = [];
    /** @var array "contextid/userid" => role shortnames */
    $GLOBALS['FAKE_ROLES'] = [];

    function get_coursemodule_from_id($modulename, $cmid, $courseid = 0, $sectionnum = false, $strictness = IGNORE_MISSING) {
        return $GLOBALS['FAKE_COURSE_MODULES'][$cmid] ?? false;
    }

    function get_user_roles($context, $userid = 0, $checkparentcontexts = true) {
        $roles = [];
        foreach ($GLOBALS['FAKE_ROLES'][$context->id . '/' . $userid] ?? [] as $i => $shortname) {
            $roles[$i + 1] = (object)['id' => $i + 1, 'shortname' => $shortname];
        }
        return $roles;
    }
}

namespace core_privacy\local\metadata {
    interface provider {
    }

    /** Records what a provider declares. */
    class collection {
        /** @var array[] */
        public $items = [];

        public function add_database_table($name, array $privacyfields, $summary = '') {
            $this->items[] = ['type' => 'database_table', 'name' => $name, 'fields' => $privacyfields, 'summary' => $summary];
            return $this;
        }

        public function add_external_location_link($name, array $privacyfields, $summary = '') {
            $this->items[] = ['type' => 'external_location', 'name' => $name, 'fields' => $privacyfields,
                'summary' => $summary];
            return $this;
        }
    }
}

namespace core_privacy\local\request {
    interface core_userlist_provider {
    }
}

namespace core_privacy\local\request\plugin {
    interface provider {
    }
}

namespace core_privacy\local\request {
    class contextlist {
    }

    class userlist {
    }

    class approved_contextlist {
        /** @var \stdClass */
        private $user;
        /** @var \context[] */
        private $contexts;

        public function __construct(\stdClass $user, array $contexts) {
            $this->user = $user;
            $this->contexts = $contexts;
        }

        public function get_user() {
            return $this->user;
        }

        public function get_contexts() {
            return $this->contexts;
        }
    }

    class approved_userlist {
        /** @var \context */
        private $context;
        /** @var int[] */
        private $userids;

        public function __construct(\context $context, array $userids) {
            $this->context = $context;
            $this->userids = $userids;
        }

        public function get_context() {
            return $this->context;
        }

        public function get_userids() {
            return $this->userids;
        }
    }

    class transform {
        public static function yesno($value) {
            return $value ? 'Yes' : 'No';
        }

        public static function datetime($value) {
            return gmdate('c', (int)$value);
        }
    }

    /** Collects exported data by context id and subcontext path. */
    class writer {
        /** @var array */
        public static $exported = [];
        /** @var \context */
        private $context;

        public static function with_context(\context $context) {
            $w = new writer();
            $w->context = $context;
            return $w;
        }

        public function export_data(array $subcontext, \stdClass $data) {
            self::$exported[$this->context->id][implode('/', $subcontext)] = $data;
            return $this;
        }
    }
}

namespace core_external {
    /** Descriptions of parameters and returns, kept so a test can compare them with values. */
    abstract class external_description {
    }

    class external_value extends external_description {
        /** @var string */
        public $type;
        /** @var bool */
        public $allownull;

        public function __construct($type, $desc = '', $required = VALUE_REQUIRED, $default = null,
                $allownull = NULL_ALLOWED) {
            $this->type = $type;
            $this->allownull = $allownull;
        }
    }

    class external_single_structure extends external_description {
        /** @var external_description[] */
        public $keys;

        public function __construct(array $keys = [], $desc = '', $required = VALUE_REQUIRED, $default = null) {
            $this->keys = $keys;
        }
    }

    class external_function_parameters extends external_single_structure {
    }

    class external_multiple_structure extends external_description {
        /** @var external_description */
        public $content;

        public function __construct(external_description $content, $desc = '', $required = VALUE_REQUIRED,
                $default = null) {
            $this->content = $content;
        }
    }

    class external_warnings extends external_multiple_structure {
        public function __construct() {
            parent::__construct(new external_single_structure([]));
        }
    }

    /** The checks external functions make, recorded. */
    class external_api {
        /** @var array[] */
        public static $calls = [];

        public static function validate_parameters(external_description $description, $params) {
            self::$calls[] = ['validate_parameters', array_keys($params)];
            if (array_keys($description->keys) !== array_keys($params)) {
                throw new \moodle_exception('parameters do not match their description');
            }
            return $params;
        }

        public static function validate_context($context) {
            self::$calls[] = ['validate_context', $context->id];
        }
    }
}

namespace core\task {
    abstract class scheduled_task {
        abstract public function get_name();
        abstract public function execute();
    }
}

namespace core\event {
    /** An event as observers see it: get_data() and record snapshots. */
    abstract class base {
        /** @var array */
        protected $data;
        /** @var array table => id => record */
        private $snapshots = [];

        public static function fake(array $data, array $snapshots = []): self {
            $event = new static();
            $event->data = array_merge([
                'eventname' => '\\' . static::class, 'component' => 'core', 'objectid' => null,
                'contextinstanceid' => 0, 'userid' => 2, 'courseid' => 0, 'relateduserid' => null,
                'other' => null, 'timecreated' => time(),
            ], $data);
            $event->snapshots = $snapshots;
            return $event;
        }

        public function __get($name) {
            return $this->data[$name] ?? null;
        }

        public function __isset($name) {
            return isset($this->data[$name]);
        }

        public function get_data() {
            return $this->data;
        }

        public function get_record_snapshot($table, $id) {
            global $DB;
            if (isset($this->snapshots[$table][$id])) {
                return clone $this->snapshots[$table][$id];
            }
            return $DB->get_record($table, ['id' => $id]);
        }
    }

    class course_completed extends base {
    }

    class course_module_completion_updated extends base {
    }

    class user_enrolment_created extends base {
    }

    class user_enrolment_updated extends base {
    }

    class user_enrolment_deleted extends base {
    }

    class user_graded extends base {
    }

    class course_module_created extends base {
    }

    class user_deleted extends base {
    }

    class role_assigned extends base {
    }

    class role_unassigned extends base {
    }
}
