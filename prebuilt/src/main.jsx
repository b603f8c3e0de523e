// 100ms Prebuilt, unchanged, pointed at this platform: the room code comes from the page's
// path (/meeting/<room code>), and every endpoint Prebuilt and the SDK call is this server's:
// - tokenByRoomCode: POST /v2/token {code, user_id} → {token}
// - init: signaling's /init, as GET /api/config names it (it may be another port)
// - roomLayout: GET /v2/layouts/ui with the auth token → every role's layout
// - event: POST /v2/client/feedback (the leave screen's feedback)
import { createRoot } from 'react-dom/client';
import { HMSPrebuilt } from '@100mslive/roomkit-react';
import '@100mslive/roomkit-react/index.css';

const root = createRoot(document.getElementById('root'));

function message(text) {
  root.render(<p style={{ color: '#eee', font: '16px sans-serif', padding: '2em' }}>{text}</p>);
}

async function start() {
  const code = decodeURIComponent(location.pathname.replace(/^\/meeting\/?/, '').split('/')[0] || '');
  if (!/^[a-z0-9-]{3,64}$/i.test(code)) {
    message('This meeting link has no room code: open /meeting/<room code>, as the dashboard or the REST API (POST /v2/room-codes/room/<room id>) gives it.');
    return;
  }
  const res = await fetch('/api/config');
  if (!res.ok) throw new Error(`GET /api/config: HTTP ${res.status}`);
  const config = await res.json();
  const here = location.origin;
  const params = new URLSearchParams(location.search);
  root.render(
    <HMSPrebuilt
      roomCode={code}
      options={{
        userName: params.get('name') || undefined,
        userId: params.get('user_id') || undefined,
        endpoints: {
          init: config.initEndpoint,
          tokenByRoomCode: `${here}/v2/token`,
          roomLayout: `${here}/v2/layouts/ui`,
          event: `${here}/`,
        },
      }}
      onLeave={() => {}}
    />,
  );
}

start().catch((e) => message(`Cannot start the meeting: ${e.message}`));
