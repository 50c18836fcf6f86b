// bm-i18n.js: the classic script handle `bm-relay-i18n` that carries the
// chat page's script translations. The chat page is made of ES modules
// (loaded through an import map), and WordPress's
// wp_set_script_translations() attaches a translation JSON only to a
// registered classic script: so this handle depends on `wp-i18n`, WordPress
// prints the JSON's locale data into wp.i18n right after it (domain
// `bm-relay`), and the modules read it from there (chat/strings.js,
// scriptTranslations()). Its own work is only to say that it ran, for
// tests and site scripts: `window.bmRelayI18n.ready`.
(function (w) {
  w.bmRelayI18n = { domain: 'bm-relay', ready: !!(w.wp && w.wp.i18n) };
})(window);
