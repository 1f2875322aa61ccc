"""Socket.IO: the server in the API process and the emitter every process uses."""

CHANNEL = "bookbazar-socketio"
NAMESPACE = "/"


def user_room(user_id: object) -> str:
    return f"user:{user_id}"


def book_room(book_id: object) -> str:
    return f"book:{book_id}"
