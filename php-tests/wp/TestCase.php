<?php
/**
 * Base class of the WordPress suite: REST calls as a given user with a real
 * nonce, row checks in MariaDB, and real relay subscribers.
 */

use PHPUnit\Framework\TestCase;

abstract class BM_WP_TestCase extends TestCase
{
    /** @var list<BM_WP_Subscriber> subscribers to close after the test */
    private array $subs = [];

    protected function h(): BM_WP_Harness
    {
        return $GLOBALS['bm_h'];
    }

    /** User id by login (admin, alice, bob, carol, dave). */
    protected function uid(string $name): int
    {
        return $this->h()->users[$name];
    }

    /** Size of the WordPress debug log when the test started. */
    private int $log_at = 0;

    protected function setUp(): void
    {
        BM_Relay_Push::reset_request();
        BM_Relay_Settings::apply();
        // The suite sends and creates far more than a person would in a
        // minute or an hour: rate limits off (LimitsTest puts them back).
        if (class_exists('BM_Relay_Limits')) {
            add_filter('bm_relay_limit_messages_per_minute', '__return_zero');
            add_filter('bm_relay_limit_threads_per_hour', '__return_zero');
        }
        clearstatcache();
        $log = $this->h()->run . '/wp-debug.log';
        $this->log_at = is_file($log) ? (int) filesize($log) : 0;
    }

    /**
     * PHP notices, warnings and errors the plugin caused during the test
     * (WordPress logs them to wp-debug.log, in this process and in php -S).
     *
     * @return list<string>
     */
    private function plugin_log_lines(): array
    {
        clearstatcache();
        $log = $this->h()->run . '/wp-debug.log';
        if (!is_file($log) || filesize($log) <= $this->log_at) {
            return [];
        }
        $new = (string) file_get_contents($log, false, null, $this->log_at);
        return array_values(array_filter(explode("\n", $new), static fn($l) => strpos($l, 'plugins/bm-relay/') !== false));
    }

    protected function assertPostConditions(): void
    {
        $this->assertSame([], $this->plugin_log_lines(), 'the plugin logged PHP notices or errors');
    }

    protected function tearDown(): void
    {
        $users = [];
        foreach ($this->subs as $s) {
            $s->close();
            $users[] = $s->user;
        }
        $this->subs = [];
        // Let the relay notice the closed sockets before the next test
        // counts who is online (bounded).
        $deadline = microtime(true) + 3;
        while ($users && microtime(true) < $deadline) {
            try {
                if (bm_presence(array_values(array_unique($users))) === []) {
                    break;
                }
            } catch (BmRelayException $e) {
                break;
            }
            usleep(20000);
        }
        wp_set_current_user(0);
    }

    /**
     * A REST call through WordPress's REST server, as $user (null: logged
     * out) with a real `wp_rest` nonce for that user unless $nonce is given
     * (false: no nonce at all).
     *
     * @param array<string,mixed> $body JSON body
     * @param array<string,mixed> $query query parameters
     * @param string|false|null $nonce
     * @return array{0:int,1:mixed} status and decoded body
     */
    protected function rest(string $method, string $route, ?string $user, array $body = [], array $query = [], $nonce = null): array
    {
        // Each call is a request of its own (PHP keeps no state between them).
        BM_Relay_Push::reset_request();
        wp_set_current_user($user === null ? 0 : $this->uid($user));
        $req = new WP_REST_Request($method, '/bm/v1' . $route);
        if ($nonce === null) {
            $nonce = wp_create_nonce('wp_rest');
        }
        if ($nonce !== false) {
            $req->set_header('X-WP-Nonce', $nonce);
        }
        if ($body) {
            $req->set_header('Content-Type', 'application/json');
            $req->set_body((string) wp_json_encode($body));
        }
        if ($query) {
            $req->set_query_params($query);
        }
        $res = rest_do_request($req);
        $data = rest_get_server()->response_to_data($res, false);
        return [$res->get_status(), json_decode((string) wp_json_encode($data), true)];
    }

    /**
     * A REST call with a form-encoded body (values JSON cannot carry).
     *
     * @param array<string,string> $params
     * @return array{0:int,1:mixed}
     */
    protected function rest_form(string $method, string $route, string $user, array $params): array
    {
        wp_set_current_user($this->uid($user));
        $req = new WP_REST_Request($method, '/bm/v1' . $route);
        $req->set_header('X-WP-Nonce', wp_create_nonce('wp_rest'));
        $req->set_header('Content-Type', 'application/x-www-form-urlencoded');
        $req->set_body_params($params);
        $res = rest_do_request($req);
        $data = rest_get_server()->response_to_data($res, false);
        return [$res->get_status(), json_decode((string) wp_json_encode($data), true)];
    }

    /** Asserts a status and returns the body. */
    protected function ok(array $r, int $status = 200): array
    {
        $this->assertSame($status, $r[0], 'HTTP status; body: ' . json_encode($r[1]));
        return (array) $r[1];
    }

    /** Asserts an error status and code. */
    protected function err(array $r, int $status, ?string $code = null): void
    {
        $this->assertSame($status, $r[0], 'HTTP status; body: ' . json_encode($r[1]));
        if ($code !== null) {
            $this->assertSame($code, $r[1]['code'] ?? null, json_encode($r[1]));
        }
    }

    /**
     * Rows straight from MariaDB (own connection, not $wpdb's cache).
     *
     * @return list<array<string,string|null>>
     */
    protected function rows(string $sql): array
    {
        $m = $this->h()->mysqli();
        $res = $m->query($sql);
        $rows = $res->fetch_all(MYSQLI_ASSOC);
        $m->close();
        return $rows;
    }

    /** Creates a thread as $creator with $others; returns its JSON. */
    protected function thread(string $creator, array $others, string $subject = 'test'): array
    {
        $ids = array_map(fn($n) => $this->uid($n), $others);
        return $this->ok($this->rest('POST', '/threads', $creator, ['participants' => $ids, 'subject' => $subject]), 201)['thread'];
    }

    /** A real subscriber for $user (optionally on threads); closed after the test. */
    protected function sub(string $user, array $threads = []): BM_WP_Subscriber
    {
        $s = new BM_WP_Subscriber($this->h(), $this->uid($user), $threads);
        $this->subs[] = $s;
        return $s;
    }
}
