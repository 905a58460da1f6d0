// The channels page: one realtime socket (signed by the page's session), subscribed to the
// chosen channel; broadcasts heard are listed, and a broadcast sent lists the answers.
(() => {
  const listen = document.getElementById("listen");
  const send = document.getElementById("broadcast");
  const heard = document.getElementById("heard");
  const answers = document.getElementById("answers");
  const state = document.getElementById("listening");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  let socket = null;
  let channel = null;
  let next = 1;

  const item = (list, text) => {
    const li = document.createElement("li");
    li.textContent = text;
    list.prepend(li);
  };

  function open() {
    return new Promise((resolve) => {
      if (socket && socket.readyState === WebSocket.OPEN) return resolve(socket);
      socket = new WebSocket(`${scheme}//${location.host}/api/v1/realtime`);
      socket.onopen = () => resolve(socket);
      socket.onclose = () => { state.textContent = "disconnected"; socket = null; };
      socket.onmessage = (message) => {
        const frame = JSON.parse(message.data);
        if (frame.op === "broadcast") {
          item(heard, `${frame.name}: ${JSON.stringify(frame.payload)}`);
        } else if (frame.op === "responses") {
          item(answers, `${frame.responses.length} answered: ${JSON.stringify(frame.responses)}`);
        } else if (frame.op === "ack" && frame.id === 1) {
          state.textContent = `listening to ${channel}`;
        } else if (frame.op === "error") {
          item(answers, `refused: ${frame.message}`);
        }
      };
    });
  }

  listen.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ws = await open();
    if (channel) ws.send(JSON.stringify({ op: "unsubscribe", id: next++, channel }));
    channel = listen.elements.channel.value;
    ws.send(JSON.stringify({ op: "subscribe", id: 1, channel }));
  });

  send.addEventListener("submit", async (event) => {
    event.preventDefault();
    let payload;
    try { payload = JSON.parse(send.elements.payload.value || "null"); }
    catch { item(answers, "the payload is not JSON"); return; }
    const ws = await open();
    ws.send(JSON.stringify({
      op: "broadcast", id: ++next, channel: listen.elements.channel.value,
      name: send.elements.name.value, payload, timeout: Number(send.elements.timeout.value),
    }));
  });
})();
