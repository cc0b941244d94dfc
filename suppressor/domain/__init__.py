"""The pure decision engine: no Kafka, no faust, no I/O, no clocks.

`policy` (settings), `model` (events, state, decisions as plain values),
`catalog` (items and similarity), `rules` (the named rules and their order),
`engine` (one user's timeline), `processor` (many users, stream time, due index).
"""
