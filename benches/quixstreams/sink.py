"""The comparison consumer of `dev/bench`: quixstreams 3.x draining the
benchmark's topic into PostgreSQL with its PostgreSQL sink, written the way
its documentation shows (an Application, a topic with the JSON
deserializer, `sdf.sink(PostgreSQLSink(...))`, `app.run()`) and with its
defaults: offsets are committed every 5 s, after the sink has flushed that
checkpoint's batch (one INSERT of many rows, one row per message).

The driver (benches/pipeline/quix.rs) starts it as a process of its own and
stops it once the group's committed offsets reach the end of the load.

Environment: QUIX_BROKER, QUIX_TOPIC, QUIX_GROUP, QUIX_PG_HOST, QUIX_PG_PORT,
QUIX_PG_DB, QUIX_PG_USER, QUIX_PG_PASSWORD, QUIX_TABLE.
"""

import os

from quixstreams import Application
from quixstreams.sinks.community.postgresql import PostgreSQLSink


def main() -> None:
    env = os.environ
    app = Application(
        broker_address=env["QUIX_BROKER"],
        consumer_group=env["QUIX_GROUP"],
        # The load is preloaded before the consumer starts.
        auto_offset_reset="earliest",
    )
    topic = app.topic(env["QUIX_TOPIC"], value_deserializer="json")
    sink = PostgreSQLSink(
        host=env["QUIX_PG_HOST"],
        port=int(env["QUIX_PG_PORT"]),
        dbname=env["QUIX_PG_DB"],
        user=env["QUIX_PG_USER"],
        password=env.get("QUIX_PG_PASSWORD", ""),
        table_name=env["QUIX_TABLE"],
        schema_auto_update=True,
    )
    sdf = app.dataframe(topic)
    sdf.sink(sink)
    app.run()


if __name__ == "__main__":
    main()
