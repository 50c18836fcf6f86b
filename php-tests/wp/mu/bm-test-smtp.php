<?php
/**
 * Test-only must-use plugin (copied into the harness site by MailTest):
 * WordPress sends its mail over SMTP to the loopback server whose port is
 * in the option `bm_test_smtp_port` (php-tests/lib/smtp-sink.py), as a site
 * would configure its own SMTP server — wp_mail() itself is not replaced.
 * Without the option WordPress mails as it would anyway.
 */

add_action('phpmailer_init', static function ($mailer): void {
    $port = (int) get_option('bm_test_smtp_port', 0);
    if ($port < 1) {
        return;
    }
    $mailer->isSMTP();
    $mailer->Host = '127.0.0.1';
    $mailer->Port = $port;
    $mailer->SMTPAuth = false;
    $mailer->SMTPAutoTLS = false;
    $mailer->SMTPSecure = '';
    $mailer->Timeout = 5;
});
// The site's host is 127.0.0.1, which makes WordPress's default sender
// wordpress@127.0.0.1, an address PHPMailer refuses.
add_filter('wp_mail_from', static fn(): string => 'wordpress@example.test');
