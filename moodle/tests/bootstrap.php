<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.
//
// The plugin's framework-independent classes load without Moodle: this maps the plugin's
// namespace onto classes/ the way Moodle's autoloader does, and nothing else.

define('MOODLE_INTERNAL', true);
define('LOCAL_LMSBRIDGE_DIR', dirname(__DIR__) . '/local_lmsbridge');

spl_autoload_register(function (string $class): void {
    $prefix = 'local_lmsbridge\\';
    if (strpos($class, $prefix) !== 0) {
        return;
    }
    $file = LOCAL_LMSBRIDGE_DIR . '/classes/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require_once($file);
    }
});

require_once(__DIR__ . '/support/memory_outbox.php');
require_once(__DIR__ . '/support/scripted_transport.php');
