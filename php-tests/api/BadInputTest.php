<?php
/**
 * Every bad-input path of the PHP API: each throws BmRelayException (a
 * RuntimeException, code 0) whose message names the function and the
 * field, and never contains the secret. Nothing is queued or sent.
 */

use PHPUnit\Framework\TestCase;

final class BadInputTest extends TestCase
{
    private const SECRET = 'IpHYzcMQQR5-wnN4pmHJNRh8B-TVY26bw8QAsnJEuM0';

    protected function setUp(): void
    {
        // A relay URL where nothing listens: no bad input may reach it.
        bm_configure(['site' => 'example.com', 'secret' => self::SECRET, 'url' => 'http://127.0.0.1:' . BM_Test::free_port(), 'mode' => 'async']);
    }

    public function bad_calls(): iterable
    {
        $ok = ['type' => 'x', 'to' => [1]];
        // bm_configure
        yield 'configure: not an array' => [fn() => bm_configure('url'), 'bm_configure(): opts must be an array, got string'];
        yield 'configure: int key' => [fn() => bm_configure(['x']), 'bm_configure(): opts must have string keys'];
        yield 'configure: unknown key' => [fn() => bm_configure(['nope' => 1]), "bm_configure(): unknown setting 'nope'"];
        yield 'configure: url type' => [fn() => bm_configure(['url' => 5]), "bm_configure(): 'url' must be a string, got int"];
        yield 'configure: url scheme' => [fn() => bm_configure(['url' => 'ftp://x']), 'bm_configure(): bm_relay.url must start with http:// or https://'];
        yield 'configure: url not a url' => [fn() => bm_configure(['url' => 'relay:80']), 'bm_configure(): bm_relay.url'];
        yield 'configure: url credentials' => [fn() => bm_configure(['url' => 'http://u:p@127.0.0.1']), 'bm_configure(): bm_relay.url must not contain credentials'];
        yield 'configure: site' => [fn() => bm_configure(['site' => 'Bad Site']), 'bm_configure(): bm_relay.site'];
        yield 'configure: site type' => [fn() => bm_configure(['site' => ['a']]), "bm_configure(): 'site' must be a string, got array"];
        yield 'configure: mode' => [fn() => bm_configure(['mode' => 'fast']), "bm_configure(): bm_relay.mode must be 'async' or 'sync'"];
        yield 'configure: timeout 0' => [fn() => bm_configure(['timeout_ms' => 0]), 'bm_configure(): bm_relay.timeout_ms must be an integer number of milliseconds'];
        yield 'configure: timeout type' => [fn() => bm_configure(['timeout_ms' => 1.5]), "bm_configure(): 'timeout_ms' must be an integer, got float"];
        yield 'configure: connect timeout' => [fn() => bm_configure(['connect_timeout_ms' => 600001]), 'bm_configure(): bm_relay.connect_timeout_ms'];
        yield 'configure: flush timeout' => [fn() => bm_configure(['flush_timeout_ms' => -1]), 'bm_configure(): bm_relay.flush_timeout_ms'];
        yield 'configure: queue size' => [fn() => bm_configure(['queue_size' => 0]), 'bm_configure(): bm_relay.queue_size must be an integer 1..'];
        yield 'configure: secret' => [fn() => bm_configure(['secret' => 'too-short']), 'bm_configure(): bm_relay.secret is not a site secret'];
        yield 'configure: secret padded' => [fn() => bm_configure(['secret' => self::SECRET . '=']), 'bm_configure(): bm_relay.secret is not a site secret'];
        yield 'configure: secret file missing' => [fn() => bm_configure(['secret_file' => '/nonexistent/bm-secret']), "bm_configure(): bm_relay.secret_file: cannot read '/nonexistent/bm-secret'"];
        // event fields (bm_push, bm_seal, bm_push_many)
        yield 'push: not an array' => [fn() => bm_push('x'), 'bm_push(): event must be an array, got string'];
        yield 'push: no type' => [fn() => bm_push(['to' => [1]]), "bm_push(): 'type' is required"];
        yield 'push: type int' => [fn() => bm_push(['type' => 5, 'to' => [1]]), "bm_push(): 'type' must be a string, got int"];
        yield 'push: type empty' => [fn() => bm_push(['type' => '', 'to' => [1]]), "bm_push(): 'type' must be 1..128 bytes long"];
        yield 'push: type long' => [fn() => bm_push(['type' => str_repeat('t', 129), 'to' => [1]]), "bm_push(): 'type' must be 1..128 bytes long, got 129"];
        yield 'push: unknown key' => [fn() => bm_push($ok + ['too' => [1]]), "bm_push(): event has an unknown key 'too'"];
        yield 'push: int key' => [fn() => bm_push($ok + [5 => 1]), 'bm_push(): event must have string keys'];
        yield 'push: to not array' => [fn() => bm_push(['type' => 'x', 'to' => 1]), "bm_push(): 'to' must be an array of user ids, got int"];
        yield 'push: to string' => [fn() => bm_push(['type' => 'x', 'to' => ['abc']]), "bm_push(): 'to'[0] must be an integer 1..9007199254740991, got a non-numeric string"];
        yield 'push: to zero' => [fn() => bm_push(['type' => 'x', 'to' => [0]]), "bm_push(): 'to'[0] must be an integer 1..9007199254740991, got 0"];
        yield 'push: to negative' => [fn() => bm_push(['type' => 'x', 'to' => [-3]]), "'to'[0] must be an integer 1..9007199254740991, got -3"];
        yield 'push: to 2^53' => [fn() => bm_push(['type' => 'x', 'to' => [9007199254740992]]), "'to'[0] must be an integer 1..9007199254740991, got 9007199254740992"];
        yield 'push: to float' => [fn() => bm_push(['type' => 'x', 'to' => [1.0]]), "'to'[0] must be an integer 1..9007199254740991, got float"];
        yield 'push: to bool' => [fn() => bm_push(['type' => 'x', 'to' => [true]]), "'to'[0] must be an integer 1..9007199254740991, got bool"];
        yield 'push: to leading zero' => [fn() => bm_push(['type' => 'x', 'to' => ['012']]), "'to'[0] must be an integer"];
        yield 'push: to too many' => [fn() => bm_push(['type' => 'x', 'thread' => 1, 'to' => range(1, 10001)]), "bm_push(): 'to' has 10001 user ids, over the limit of 10000"];
        yield 'push: user key needs one' => [fn() => bm_push(['type' => 'x', 'to' => [1, 2]]), "bm_push(): 'to' must hold exactly one user id when 'thread' is not set"];
        yield 'push: user key none' => [fn() => bm_push(['type' => 'x']), "'to' must hold exactly one user id"];
        yield 'push: thread string' => [fn() => bm_push(['type' => 'x', 'thread' => 'abc', 'to' => [1]]), "bm_push(): 'thread' must be an integer 1..9007199254740991"];
        yield 'push: thread zero' => [fn() => bm_push(['type' => 'x', 'thread' => 0, 'to' => [1]]), "bm_push(): 'thread' must be an integer 1..9007199254740991, got 0"];
        yield 'push: epoch negative' => [fn() => bm_push(['type' => 'x', 'thread' => 1, 'epoch' => -1, 'to' => [1]]), "bm_push(): 'epoch' must be an integer 0..4294967295"];
        yield 'push: epoch too big' => [fn() => bm_push(['type' => 'x', 'thread' => 1, 'epoch' => 4294967296, 'to' => [1]]), "'epoch' must be an integer 0..4294967295, got 4294967296"];
        yield 'push: epoch without thread' => [fn() => bm_push(['type' => 'x', 'epoch' => 1, 'to' => [1]]), "bm_push(): 'epoch' needs 'thread'"];
        yield 'push: live type' => [fn() => bm_push(['type' => 'x', 'thread' => 1, 'live' => 1, 'to' => [1]]), "bm_push(): 'live' must be a bool, got int"];
        yield 'push: live without thread' => [fn() => bm_push(['type' => 'x', 'live' => true, 'to' => [1]]), "bm_push(): 'live' needs 'thread'"];
        yield 'push: reaches nobody' => [fn() => bm_push(['type' => 'x', 'thread' => 4]), "bm_push(): 'to' is empty and 'live' is false: the event would reach nobody"];
        yield 'push: id type' => [fn() => bm_push($ok + ['id' => 5]), "bm_push(): 'id' must be a string or null, got int"];
        yield 'push: id chars' => [fn() => bm_push($ok + ['id' => 'a b']), "bm_push(): 'id': event id is malformed"];
        yield 'push: id long' => [fn() => bm_push($ok + ['id' => str_repeat('a', 65)]), "bm_push(): 'id': event id is malformed"];
        yield 'push: data NAN' => [fn() => bm_push($ok + ['data' => NAN]), "bm_push(): 'data' is not JSON-encodable: Inf and NaN cannot be JSON encoded"];
        yield 'push: data bad utf8' => [fn() => bm_push($ok + ['data' => ['t' => "\xc3\x28"]]), "bm_push(): 'data' is not JSON-encodable: Malformed UTF-8"];
        yield 'push: data resource' => [fn() => bm_push($ok + ['data' => STDERR]), "bm_push(): 'data' is not JSON-encodable"];
        yield 'push: data too deep' => [fn() => bm_push($ok + ['data' => self::deep(600)]), "bm_push(): 'data' is not JSON-encodable: Maximum stack depth exceeded"];
        yield 'push: data too large' => [fn() => bm_push($ok + ['data' => str_repeat('a', 65536)]), "bm_push(): 'data' is too large: the sealed event is"];
        yield 'seal: names bm_seal' => [fn() => bm_seal(['type' => 'x', 'to' => [0]]), "bm_seal(): 'to'[0] must be an integer"];
        yield 'many: not an array' => [fn() => bm_push_many(null), 'bm_push_many(): events must be an array, got null'];
        yield 'many: event not array' => [fn() => bm_push_many([$ok, 'x']), 'bm_push_many(): events[1] must be an array, got string'];
        yield 'many: names the event' => [fn() => bm_push_many([$ok, ['to' => [1]]]), "bm_push_many(): events[1]['type'] is required"];
        yield 'many: names the field' => [fn() => bm_push_many([$ok, $ok, ['type' => 'x', 'to' => [1, 'b']]]), "bm_push_many(): events[2]['to'][1] must be an integer"];
        yield 'many: too many' => [fn() => bm_push_many(array_fill(0, 1001, $ok)), 'bm_push_many(): events has 1001 events, over the limit of 1000 per call'];
        // bm_flush
        yield 'flush: type' => [fn() => bm_flush('soon'), 'bm_flush(): timeout_ms must be an integer number of milliseconds'];
        yield 'flush: negative' => [fn() => bm_flush(-5), 'bm_flush(): timeout_ms must be an integer number of milliseconds 0..600000, got -5'];
        // bm_open
        yield 'open: not a string' => [fn() => bm_open(['v' => 1]), 'bm_open(): envelope must be a string, got array'];
        yield 'open: not json' => [fn() => bm_open('nope'), 'bm_open(): envelope: envelope is malformed'];
        yield 'open: missing fields' => [fn() => bm_open('{"v":1}'), 'bm_open(): envelope: envelope is malformed'];
        yield 'open: version' => [fn() => bm_open('{"v":2,"id":"a","k":"t/1/0","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA"}'), 'bm_open(): envelope: envelope version 2 is not supported'];
        yield 'open: nonce' => [fn() => bm_open('{"v":1,"id":"a","k":"t/1/0","n":"AAAA","c":"AAAAAAAAAAAAAAAAAAAAAA"}'), 'bm_open(): envelope: envelope nonce `n` must be 12 bytes'];
        yield 'open: short c' => [fn() => bm_open('{"v":1,"id":"a","k":"t/1/0","n":"AAAAAAAAAAAAAAAA","c":"AAAA"}'), 'bm_open(): envelope: envelope ciphertext `c` must be base64url of at least 16 bytes'];
        yield 'open: unknown field' => [fn() => bm_open('{"v":1,"id":"a","k":"t/1/0","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA","x":1}'), 'bm_open(): envelope: envelope is malformed'];
        yield 'open: bad key id' => [fn() => bm_open('{"v":1,"id":"a","k":"t/01/0","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA"}'), 'bm_open(): envelope: envelope is malformed'];
        yield 'open: does not open' => [fn() => bm_open('{"v":1,"id":"a","k":"t/1/0","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA"}'), 'bm_open(): envelope: envelope does not open'];
        // tokens and keys
        yield 'token: user string' => [fn() => bm_client_token('bob'), 'bm_client_token(): user_id must be an integer 1..9007199254740991, got a non-numeric string'];
        yield 'token: user zero' => [fn() => bm_client_token(0), 'bm_client_token(): user_id must be an integer 1..9007199254740991, got 0'];
        yield 'token: ttl zero' => [fn() => bm_client_token(1, 0), 'bm_client_token(): ttl must be an integer number of seconds 1..'];
        yield 'token: ttl type' => [fn() => bm_client_token(1, '1h'), 'bm_client_token(): ttl must be an integer number of seconds'];
        yield 'thread token: thread' => [fn() => bm_thread_token(1, -1), 'bm_thread_token(): thread_id must be an integer 1..9007199254740991, got -1'];
        yield 'thread token: user' => [fn() => bm_thread_token(null, 1), 'bm_thread_token(): user_id must be an integer 1..9007199254740991, got null'];
        yield 'thread key: thread' => [fn() => bm_thread_key(1.5), 'bm_thread_key(): thread_id must be an integer 1..9007199254740991, got float'];
        yield 'thread key: epoch' => [fn() => bm_thread_key(1, 4294967296), 'bm_thread_key(): epoch must be an integer 0..4294967295, got 4294967296'];
        yield 'user key' => [fn() => bm_user_key([]), 'bm_user_key(): user_id must be an integer 1..9007199254740991, got array'];
        // relay calls: input is checked before anything is sent
        yield 'presence: not array' => [fn() => bm_presence(5), 'bm_presence(): user_ids must be an array of user ids, got int'];
        yield 'presence: bad id' => [fn() => bm_presence([1, 0]), 'bm_presence(): user_ids[1] must be an integer 1..9007199254740991, got 0'];
        yield 'presence: too many' => [fn() => bm_presence(range(1, 10001)), 'bm_presence(): user_ids has 10001 user ids, over the limit of 10000'];
        yield 'disconnect: bad id' => [fn() => bm_disconnect(['x']), 'bm_disconnect(): user_ids[0] must be an integer'];
        yield 'disconnect: bad thread' => [fn() => bm_disconnect([1], 0), 'bm_disconnect(): thread_id must be an integer 1..9007199254740991, got 0'];
    }

    private static function deep(int $n): array
    {
        $a = [];
        for ($i = 0; $i < $n; $i++) {
            $a = [$a];
        }
        return $a;
    }

    /** @dataProvider bad_calls */
    public function test_bad_input_throws_BmRelayException_naming_the_field(callable $call, string $message): void
    {
        $before = bm_stats();
        try {
            $call();
            $this->fail('no exception');
        } catch (BmRelayException $e) {
            $this->assertInstanceOf(RuntimeException::class, $e);
            $this->assertStringContainsString($message, $e->getMessage());
            $this->assertStringNotContainsString(self::SECRET, $e->getMessage());
            $this->assertSame(0, $e->getCode(), 'input errors have code 0');
        }
        $after = bm_stats();
        $this->assertSame($before['queued'], $after['queued'], 'nothing queued');
        $this->assertSame($before['batches'], $after['batches'], 'nothing sent');
    }

    public function test_a_rejected_configure_changes_nothing(): void
    {
        $key = bm_relay_key();
        try {
            bm_configure(['site' => 'other.example', 'secret' => BM_Test::new_secret(), 'timeout_ms' => 0]);
            $this->fail('no exception');
        } catch (BmRelayException $e) {
            $this->assertStringContainsString('timeout_ms', $e->getMessage());
        }
        $this->assertSame($key, bm_relay_key());
    }

    public function test_push_many_queues_nothing_when_one_event_is_bad(): void
    {
        $before = bm_stats()['queued'];
        try {
            bm_push_many([['type' => 'ok', 'to' => [1]], ['type' => 'bad', 'to' => [0]]]);
            $this->fail('no exception');
        } catch (BmRelayException $e) {
            $this->assertStringContainsString("events[1]['to'][0]", $e->getMessage());
        }
        $this->assertSame($before, bm_stats()['queued']);
    }

    public function test_missing_settings_are_named(): void
    {
        $cases = [
            [[], fn() => bm_configure(['secret' => null, 'secret_file' => null]), 'bm_configure(): no site secret configured: set bm_relay.secret_file (preferred) or bm_relay.secret'],
            [['site' => null], fn() => bm_client_token(1), 'bm_client_token(): bm_relay.site is not set'],
            [['site' => null], fn() => bm_seal(['type' => 'x', 'to' => [1]]), 'bm_seal(): bm_relay.site is not set'],
            [['url' => null], fn() => bm_push(['type' => 'x', 'to' => [1]]), 'bm_push(): bm_relay.url is not set'],
            [['url' => null], fn() => bm_presence([1]), 'bm_presence(): bm_relay.url is not set'],
        ];
        foreach ($cases as [$unset, $call, $message]) {
            $this->setUp();
            bm_configure($unset);
            try {
                $call();
                $this->fail("no exception for $message");
            } catch (BmRelayException $e) {
                $this->assertStringContainsString($message, $e->getMessage());
            }
        }
    }

    public function test_secret_files_that_are_unreadable_or_malformed_are_named_without_their_content(): void
    {
        $dir = sys_get_temp_dir() . '/bm-secret-' . bin2hex(random_bytes(4));
        mkdir($dir);
        $bad = "$dir/malformed";
        file_put_contents($bad, "private-but-not-a-secret\n");
        $empty = "$dir/empty";
        file_put_contents($empty, '');
        try {
            foreach ([$bad, $empty] as $file) {
                try {
                    bm_configure(['secret_file' => $file]);
                    $this->fail('accepted ' . $file);
                } catch (BmRelayException $e) {
                    $this->assertStringContainsString("bm_relay.secret_file: '$file' does not hold a site secret", $e->getMessage());
                    $this->assertStringNotContainsString('private', $e->getMessage());
                }
            }
            try {
                bm_configure(['secret_file' => $dir]);
                $this->fail('accepted a directory');
            } catch (BmRelayException $e) {
                $this->assertStringContainsString("bm_relay.secret_file: cannot read '$dir'", $e->getMessage());
            }
        } finally {
            unlink($bad);
            unlink($empty);
            rmdir($dir);
        }
    }

    public function test_ids_may_be_decimal_strings_as_wpdb_returns_them(): void
    {
        $this->assertSame(bm_thread_key(12, 3), bm_thread_key('12', '3'));
        $this->assertSame(bm_user_key(7), bm_user_key('7'));
        $env = json_decode(bm_seal(['type' => 'x', 'to' => ['42']]), true);
        $this->assertSame('u/42', $env['k']);
    }
}
