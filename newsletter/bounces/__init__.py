"""After the send: bounces, complaints and mailto unsubscribes, processed automatically.

    verp.py       the signed per-delivery return address (email.bounce_address)
    classify.py   what a message is: RFC 3464 DSN, RFC 5965 ARF, auto-reply, unsubscribe
    mailboxes.py  imap:// imaps:// maildir: mbox: readers that move only what was acted on
    process.py    `newsletter bounces process`: mailbox -> classify -> policy -> processed
    webhooks.py   Amazon SES (through SNS), Mailgun and a generic JSON endpoint, verified
    sns.py        Amazon SNS message signatures and certificates
    policy.py     what an event does to a subscriber; reactivation; published thresholds

The event log itself is `newsletter.store.bounces`.
"""
