<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.

namespace local_lmsbridge_test;

use local_lmsbridge\local\http\response;
use local_lmsbridge\local\http\transport;

/**
 * A transport that records requests and answers each with a function of the request.
 */
final class scripted_transport implements transport {

    /** @var array[] url, headers, body of every request */
    public $requests = [];

    /** @var callable function (array $request, int $index): response */
    private $answer;

    /**
     * Constructor.
     *
     * @param callable $answer
     */
    public function __construct(callable $answer) {
        $this->answer = $answer;
    }

    public function post(string $url, array $headers, string $body, int $timeout): response {
        $request = ['url' => $url, 'headers' => $headers, 'body' => $body, 'timeout' => $timeout];
        $this->requests[] = $request;
        return ($this->answer)($request, count($this->requests) - 1);
    }

    /**
     * An answer accepting every event of a request, like lmsbridge's 200.
     *
     * @param array $request
     * @return response
     */
    public static function accept_all(array $request): response {
        $ids = array_map(function ($e) {
            return $e['id'];
        }, json_decode($request['body'], true)['events']);
        return new response(200, ['Content-Type' => 'application/json'],
            json_encode(['accepted' => $ids, 'duplicates' => [], 'rejected' => []]));
    }
}
