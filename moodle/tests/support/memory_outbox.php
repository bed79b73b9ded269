<?php
// This file is part of lmsbridge's tests of the Moodle plugin local_lmsbridge.

namespace local_lmsbridge_test;

use local_lmsbridge\local\outbox;
use local_lmsbridge\local\payload_builder;
use local_lmsbridge\local\uuid;

/**
 * The outbox table in memory, with the same columns and the same ordering as the database one.
 */
final class memory_outbox implements outbox {

    /** @var object[] rows by id */
    public $rows = [];

    /** @var int */
    private $nextid = 1;

    /**
     * Adds a row built by payload_builder::build, as the observer does.
     *
     * @param array $built
     * @param string|null $eventid keep an id (a resend of the same event)
     * @return object the row
     */
    public function add(array $built, ?string $eventid = null): object {
        $row = (object)[
            'id' => $this->nextid++,
            'eventid' => $eventid ?? uuid::v4(),
            'name' => $built['name'],
            'courseid' => $built['courseid'],
            'userid' => $built['userid'],
            'actorid' => $built['actorid'],
            'cmid' => $built['cmid'],
            'payload' => payload_builder::encode_payload($built['payload']),
            'timecreated' => $built['timecreated'],
            'attempts' => 0,
            'nextattempt' => 0,
            'lasterror' => null,
            'status' => outbox::STATUS_PENDING,
        ];
        $this->rows[$row->id] = $row;
        return $row;
    }

    public function due(int $now, int $limit): array {
        $due = [];
        foreach ($this->rows as $row) {
            if ($row->status === outbox::STATUS_PENDING && $row->nextattempt <= $now) {
                $due[] = clone $row;
                if (count($due) >= $limit) {
                    break;
                }
            }
        }
        return $due;
    }

    public function delete(array $ids): void {
        foreach ($ids as $id) {
            unset($this->rows[$id]);
        }
    }

    public function fail(int $id, int $attempts, string $error): void {
        $this->rows[$id]->status = outbox::STATUS_FAILED;
        $this->rows[$id]->attempts = $attempts;
        $this->rows[$id]->lasterror = $error;
    }

    public function retry(int $id, int $attempts, int $nextattempt, string $error): void {
        $this->rows[$id]->attempts = $attempts;
        $this->rows[$id]->nextattempt = $nextattempt;
        $this->rows[$id]->lasterror = $error;
    }

    /**
     * Rows by status.
     *
     * @param int $status
     * @return object[]
     */
    public function with_status(int $status): array {
        return array_values(array_filter($this->rows, function ($r) use ($status) {
            return $r->status === $status;
        }));
    }
}
