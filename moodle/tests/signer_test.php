<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.

use local_lmsbridge\local\signer;
use PHPUnit\Framework\TestCase;

final class signer_test extends TestCase {

    public function test_signature_is_hmac_sha256_of_timestamp_dot_body_in_lowercase_hex(): void {
        // Computed independently (Python's hmac module).
        $this->assertSame(
            'v1=132dedb687124f162c5b2e23356e338097e54fd9657119a424189b687b49f5f9',
            signer::signature('c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I', 1764290000, '{"events":[]}')
        );
    }

    public function test_any_change_of_secret_timestamp_or_body_changes_the_signature(): void {
        $base = signer::signature('s1', 100, 'body');
        $this->assertNotSame($base, signer::signature('s2', 100, 'body'));
        $this->assertNotSame($base, signer::signature('s1', 101, 'body'));
        $this->assertNotSame($base, signer::signature('s1', 100, 'body '));
        // The dot separates: moving a digit from the timestamp into the body is a different message.
        $this->assertNotSame(signer::signature('s1', 10, '0.x'), signer::signature('s1', 100, '.x'));
    }

    public function test_headers_carry_site_timestamp_and_signature_of_the_exact_body(): void {
        $headers = signer::headers('ms_abc', 'secret', 1764290000, '{"a":1}');
        $this->assertSame('application/json', $headers['Content-Type']);
        $this->assertSame('ms_abc', $headers['X-Lmsbridge-Site']);
        $this->assertSame('1764290000', $headers['X-Lmsbridge-Timestamp']);
        $this->assertSame(signer::signature('secret', 1764290000, '{"a":1}'), $headers['X-Lmsbridge-Signature']);
        $this->assertMatchesRegularExpression('/^v1=[0-9a-f]{64}$/', $headers['X-Lmsbridge-Signature']);
    }
}
