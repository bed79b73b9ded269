<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.

use local_lmsbridge\local\payload_builder;
use PHPUnit\Framework\TestCase;

/**
 * The plugin's Moodle-facing files checked against each other and against Moodle's conventions,
 * without Moodle: they are plain PHP arrays and XML.
 */
final class plugin_files_test extends TestCase {

    /**
     * Every file of the plugin, relative to its folder.
     *
     * @param string $suffix
     * @return string[]
     */
    private static function files(string $suffix): array {
        $files = [];
        $it = new RecursiveIteratorIterator(new RecursiveDirectoryIterator(LOCAL_LMSBRIDGE_DIR,
            FilesystemIterator::SKIP_DOTS));
        foreach ($it as $file) {
            $rel = substr($file->getPathname(), strlen(LOCAL_LMSBRIDGE_DIR) + 1);
            if (substr($rel, -strlen($suffix)) === $suffix) {
                $files[] = $rel;
            }
        }
        sort($files);
        return $files;
    }

    /**
     * Variables a Moodle definition file sets, read with the constants Moodle would define.
     *
     * @param string $file
     * @return array
     */
    private static function load(string $file): array {
        foreach ([
            'MATURITY_STABLE' => 200, 'RISK_CONFIG' => 2, 'RISK_PERSONAL' => 8, 'CAP_ALLOW' => 1,
            'CONTEXT_SYSTEM' => 10, 'CONTEXT_COURSE' => 50,
        ] as $name => $value) {
            if (!defined($name)) {
                define($name, $value);
            }
        }
        $plugin = new stdClass();
        $string = [];
        require(LOCAL_LMSBRIDGE_DIR . '/' . $file);
        unset($name, $value);
        return get_defined_vars();
    }

    public function test_every_php_file_has_the_gpl_header_and_moodle_guard_or_namespace(): void {
        $files = self::files('.php');
        $this->assertGreaterThan(25, count($files));
        foreach ($files as $file) {
            $text = file_get_contents(LOCAL_LMSBRIDGE_DIR . '/' . $file);
            $this->assertStringStartsWith("<?php\n// This file is part of Moodle - https://moodle.org/\n", $text, $file);
            $this->assertStringContainsString('GNU General Public License', $text, $file);
            $this->assertStringContainsString('@package    local_lmsbridge', $text, $file);
            $this->assertStringNotContainsString('?>', $text, "$file: no closing tag");
            if (strpos($file, 'classes/') === 0) {
                $class = 'local_lmsbridge\\' . str_replace('/', '\\', substr($file, 8, -4));
                $short = substr($class, strrpos($class, '\\') + 1);
                $this->assertMatchesRegularExpression('/^namespace ' . preg_quote(substr($class, 0, strrpos($class, '\\')), '/')
                    . ';$/m', $text, "$file: namespace matches its path (Moodle's autoloader)");
                $this->assertMatchesRegularExpression('/^(final |abstract )?(class|interface) ' . $short . '\b/m', $text,
                    "$file declares $short");
            }
        }
    }

    public function test_no_syntax_newer_than_php_7_4(): void {
        // Moodle 4.1 runs on PHP 7.4; php -l on a newer PHP would not notice these.
        $forbidden = [
            'T_MATCH' => 'match expression', 'T_NULLSAFE_OBJECT_OPERATOR' => 'nullsafe operator',
            'T_READONLY' => 'readonly', 'T_ENUM' => 'enum', 'T_ATTRIBUTE' => 'attribute',
        ];
        $functions = ['str_contains', 'str_starts_with', 'str_ends_with', 'array_is_list', 'get_debug_type'];
        foreach (array_merge(self::files('.php'), ['../tests/sender_cli.php']) as $file) {
            $tokens = token_get_all(file_get_contents(LOCAL_LMSBRIDGE_DIR . '/' . $file));
            foreach ($tokens as $i => $token) {
                if (!is_array($token)) {
                    continue;
                }
                foreach ($forbidden as $name => $what) {
                    $this->assertFalse(defined($name) && $token[0] === constant($name), "$file:{$token[2]} uses $what");
                }
                if ($token[0] === T_STRING && in_array(strtolower($token[1]), $functions, true)) {
                    $this->fail("$file:{$token[2]} calls {$token[1]}, which PHP 7.4 lacks");
                }
                if ($token[0] === T_STRING && in_array(strtolower($token[1]), ['mixed', 'never'], true)) {
                    $this->fail("$file:{$token[2]} uses the {$token[1]} type");
                }
            }
            // Constructor property promotion.
            $this->assertDoesNotMatchRegularExpression('/function __construct\([^)]*\b(public|private|protected)\s/s',
                file_get_contents(LOCAL_LMSBRIDGE_DIR . '/' . $file), $file);
        }
    }

    public function test_version_requires_41_and_supports_through_50(): void {
        $plugin = self::load('version.php')['plugin'];
        $this->assertSame('local_lmsbridge', $plugin->component);
        $this->assertSame(2026112800, $plugin->version);
        $this->assertSame(2022112800, $plugin->requires);
        $this->assertSame([401, 500], $plugin->supported);
        $this->assertSame(MATURITY_STABLE, $plugin->maturity);
        $this->assertIsString($plugin->release);
    }

    public function test_observers_cover_the_contracts_events_after_commit_with_existing_callbacks(): void {
        $observers = self::load('db/events.php')['observers'];
        $observed = array_column($observers, 'eventname');
        sort($observed);
        $expected = array_merge(payload_builder::EVENTS, ['\core\event\role_assigned', '\core\event\role_unassigned']);
        sort($expected);
        $this->assertSame($expected, $observed, 'the eight events of the contract, and role changes as enrolment updates');
        $source = file_get_contents(LOCAL_LMSBRIDGE_DIR . '/classes/observer.php');
        foreach ($observers as $observer) {
            $this->assertFalse($observer['internal'], $observer['eventname'] . ' must run after the commit');
            [$class, $method] = explode('::', $observer['callback']);
            $this->assertSame('\local_lmsbridge\observer', $class);
            $this->assertMatchesRegularExpression('/public static function ' . $method . '\(/', $source);
        }
        $this->assertStringNotContainsString('curl', strtolower($source), 'observers never touch the network');
    }

    public function test_send_task_runs_every_minute(): void {
        $tasks = self::load('db/tasks.php')['tasks'];
        $this->assertCount(1, $tasks);
        $this->assertSame('\local_lmsbridge\task\send_events', $tasks[0]['classname']);
        foreach (['minute', 'hour', 'day', 'month', 'dayofweek'] as $field) {
            $this->assertSame('*', $tasks[0][$field]);
        }
        $this->assertFileExists(LOCAL_LMSBRIDGE_DIR . '/classes/task/send_events.php');
    }

    public function test_services_are_the_contracts_four_functions_with_capability_checks(): void {
        $defs = self::load('db/services.php');
        $capabilities = self::load('db/access.php')['capabilities'];
        $this->assertSame([
            'local_lmsbridge_get_course_completions',
            'local_lmsbridge_get_activity_completions',
            'local_lmsbridge_get_grade_items',
            'local_lmsbridge_get_enrolments',
        ], array_keys($defs['functions']));
        $this->assertSame(array_keys($defs['functions']), $defs['services']['lmsbridge']['functions']);
        foreach ($defs['functions'] as $name => $def) {
            $this->assertSame('local_lmsbridge\external\\' . substr($name, strlen('local_lmsbridge_')), $def['classname']);
            $this->assertSame('read', $def['type']);
            $this->assertArrayHasKey($def['capabilities'], $capabilities);
            $file = LOCAL_LMSBRIDGE_DIR . '/classes/external/' . substr($name, strlen('local_lmsbridge_')) . '.php';
            $source = file_get_contents($file);
            $this->assertStringContainsString("require_once(__DIR__ . '/../../externalcompat.php');", $source);
            $this->assertStringContainsString('self::validate_parameters(', $source, $name);
            $this->assertStringContainsString('self::validate_context($context);', $source, $name);
            $this->assertStringContainsString("require_capability('local/lmsbridge:pull', \$context);", $source, $name);
            $this->assertLessThan(strpos($source, '$DB->get_'), strpos($source, 'require_capability('),
                "$name checks before it reads");
        }
        $this->assertSame(CONTEXT_SYSTEM, $capabilities['local/lmsbridge:viewstatus']['contextlevel']);
    }

    public function test_install_xml_has_the_outbox_columns_the_code_uses(): void {
        $xml = simplexml_load_file(LOCAL_LMSBRIDGE_DIR . '/db/install.xml');
        $this->assertSame('local/lmsbridge/db', (string)$xml['PATH']);
        $tables = [];
        foreach ($xml->TABLES->TABLE as $table) {
            $fields = [];
            foreach ($table->FIELDS->FIELD as $field) {
                $fields[(string)$field['NAME']] = $field;
            }
            $indexes = [];
            foreach ($table->INDEXES->INDEX as $index) {
                $indexes[(string)$index['FIELDS']] = (string)$index['UNIQUE'];
            }
            $tables[(string)$table['NAME']] = ['fields' => $fields, 'indexes' => $indexes];
            $this->assertLessThanOrEqual(28, strlen((string)$table['NAME']), 'Moodle table name limit');
        }
        $outbox = $tables['local_lmsbridge_outbox'];
        $this->assertSame(['id', 'eventid', 'name', 'courseid', 'userid', 'actorid', 'cmid', 'payload', 'timecreated',
            'attempts', 'nextattempt', 'lasterror', 'status'], array_keys($outbox['fields']));
        $this->assertSame('char', (string)$outbox['fields']['eventid']['TYPE']);
        $this->assertSame('36', (string)$outbox['fields']['eventid']['LENGTH']);
        $this->assertSame('text', (string)$outbox['fields']['payload']['TYPE']);
        $this->assertSame('true', $outbox['indexes']['eventid'], 'event ids are unique');
        $this->assertArrayHasKey('status, nextattempt', $outbox['indexes']);
        $this->assertSame('true', $tables['local_lmsbridge_counter']['indexes']['name']);

        // Every column the outbox code selects exists.
        $source = file_get_contents(LOCAL_LMSBRIDGE_DIR . '/classes/local/db_outbox.php');
        preg_match_all("/'((?:id|eventid|name|courseid|userid|actorid|cmid|payload|timecreated|attempts|nextattempt"
            . "|lasterror|status)(?:, [a-z]+)*)'/", $source, $m);
        foreach ($m[1] as $list) {
            foreach (explode(', ', $list) as $column) {
                $this->assertArrayHasKey($column, $outbox['fields'], "db_outbox uses $column");
            }
        }
    }

    public function test_every_string_the_code_asks_for_exists_and_strings_are_sorted(): void {
        $strings = self::load('lang/en/local_lmsbridge.php')['string'];
        $keys = array_keys($strings);
        $sorted = $keys;
        sort($sorted);
        $this->assertSame($sorted, $keys, 'Moodle keeps language strings in alphabetical order');
        $used = [];
        foreach (self::files('.php') as $file) {
            $text = file_get_contents(LOCAL_LMSBRIDGE_DIR . '/' . $file);
            preg_match_all("/(?:get_string|lang_string)\('([^']+)', 'local_lmsbridge'/", $text, $m);
            preg_match_all("/'(privacy:metadata:[^']+)'/", $text, $p);
            $used = array_merge($used, $m[1], $p[1]);
        }
        foreach (['pluginname', 'lmsbridge:pull', 'lmsbridge:viewstatus'] as $required) {
            $used[] = $required;
        }
        foreach (array_unique($used) as $key) {
            $this->assertArrayHasKey($key, $strings, "string '$key' is used");
        }
        $this->assertGreaterThan(40, count(array_unique($used)));
    }

    public function test_privacy_provider_declares_the_outbox_and_the_external_location(): void {
        $source = file_get_contents(LOCAL_LMSBRIDGE_DIR . '/classes/privacy/provider.php');
        foreach (['\core_privacy\local\metadata\provider', '\core_privacy\local\request\plugin\provider',
                '\core_privacy\local\request\core_userlist_provider'] as $interface) {
            $this->assertStringContainsString($interface, $source);
        }
        $this->assertStringContainsString("add_external_location_link('lmsbridge',", $source);
        $this->assertStringContainsString("add_database_table(self::TABLE,", $source);
        foreach (['get_contexts_for_userid', 'get_users_in_context', 'export_user_data',
                'delete_data_for_all_users_in_context', 'delete_data_for_user', 'delete_data_for_users'] as $method) {
            $this->assertMatchesRegularExpression("/public static function $method\(/", $source);
        }
        // Every top-level payload field an event can carry is covered by a declared external field.
        $declared = ['user_id', 'course_id', 'cm_id', 'occurred_at', 'completion', 'enrolment', 'grade', 'grader_id'];
        foreach ($declared as $field) {
            $this->assertStringContainsString("'$field' => 'privacy:metadata:lmsbridge:$field'", $source);
        }
    }
}
