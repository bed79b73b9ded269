<?php
// Stands in for Moodle's lib/filelib.php in the standalone tests: the curl class is in support/fake_moodle.php.
