"""Commands: what people and apps tell one device, or many, to do, kept until it is done.

A command is stored before anything else happens, and every state it goes through is a
guarded UPDATE with the time of the change, so two nodes, a retried request or a late answer
can never move it backwards or give it two final states:

    queued → sent → delivered → in_progress → succeeded | failed | rejected
    queued | sent → expired (its time to live passed) | canceled (by a person)
    delivered | in_progress → timed_out (no answer in time; a late answer is still recorded)

    store.py     the table's rules: create (idempotent), each transition, the answers
    delivery.py  the live part: device sockets, the sweeper of deadlines, waiting for an end
    routes.py    the HTTP API
"""
