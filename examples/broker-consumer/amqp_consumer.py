"""A minimal consumer of callcause records from RabbitMQ: a durable queue bound to the exchange,
each record processed once (at-least-once delivery may bring one again), acknowledged after.
Needs aio-pika; copy it and replace `handle_record`.

    AMQP_URL=amqps://reader:...@rabbitmq.example.com/telephony python amqp_consumer.py \\
        --exchange callcause --queue callcause-crm --binding 'callcause.#'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections import OrderedDict
from typing import Any

import aio_pika

SEEN_MAX = 100_000           # ids remembered for de-duplication


def handle_record(record: dict[str, Any]) -> None:
    cause = record["cause"]
    print(f"{record['id']} from {record.get('instance')}/{record['source']['name']}: "
          f"{cause['category']} ({cause['severity']}) {cause['summary']}", flush=True)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exchange", default="callcause")
    ap.add_argument("--queue", default="callcause")
    ap.add_argument("--binding", default="#", help="routing-key pattern, e.g. 'pbx-berlin-1.#'")
    ap.add_argument("--count", type=int, default=0, help="stop after this many records (0: run forever)")
    args = ap.parse_args()
    seen: OrderedDict[str, None] = OrderedDict()
    done = asyncio.Event()
    handled = 0
    conn = await aio_pika.connect(os.environ.get("AMQP_URL", "amqp://guest:guest@localhost/"))
    async with conn:
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=100)
        exchange = await channel.declare_exchange(args.exchange, "topic", durable=True)
        queue = await channel.declare_queue(args.queue, durable=True)
        await queue.bind(exchange, args.binding)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal handled
            async with message.process():          # ack after handling; a crash means redelivery
                body = json.loads(message.body)
                data = body["data"]
                for record in data if isinstance(data, list) else [data]:
                    if "cause" not in record:        # another type of document (trunk.alert ...)
                        print(f"{body['type']}: {json.dumps(record)}", flush=True)
                        continue
                    if record["id"] in seen:
                        continue                     # delivered again: already handled
                    seen[record["id"]] = None
                    if len(seen) > SEEN_MAX:
                        seen.popitem(last=False)
                    handle_record(record)
                    handled += 1
                    if args.count and handled >= args.count:
                        done.set()

        await queue.consume(on_message)
        await done.wait()


if __name__ == "__main__":
    asyncio.run(main())
