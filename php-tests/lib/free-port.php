<?php
/**
 * A loopback TCP port that is free now, for test servers.
 *
 * Picked at random from 20000–32767, below the kernel's ephemeral range
 * (32768–60999), and probed with a bind. A `bind(0)` port would be one the
 * kernel hands out next to any process on this machine (a test's client
 * socket, another suite running alongside), so the server given it could
 * find it taken before it binds: "Address already in use", 1 run in ~20.
 * The Rust and Python harnesses pick the same way.
 */
function bm_test_free_port(): int
{
    static $taken = [];
    for ($i = 0; $i < 1000; $i++) {
        $port = random_int(20000, 32767);
        if (isset($taken[$port])) {
            continue; // handed out already in this process, maybe not bound yet
        }
        $s = @stream_socket_server("tcp://127.0.0.1:$port", $errno, $errstr);
        if ($s !== false) {
            fclose($s);
            $taken[$port] = true;
            return $port;
        }
    }
    throw new RuntimeException('no free loopback port in 20000-32767 after 1000 tries');
}
