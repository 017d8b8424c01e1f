// The login page: exchanges the pasted admin token, or the client certificate of the TLS
// connection, for a session cookie (POST /ui/login, JSON).
const form = document.getElementById('login');
const error = document.getElementById('error');

async function login(body) {
  error.textContent = '';
  try {
    const res = await fetch('/ui/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      credentials: 'same-origin',
    });
    const answer = await res.json().catch(() => ({}));
    if (!res.ok) {
      error.textContent = `Refused (${res.status}): ${answer.message ?? res.statusText}`;
      return;
    }
    const next = new URLSearchParams(location.search).get('next');
    location.assign(next && /^\/ui\/[a-z]*$/.test(next) ? next : '/ui/mesh');
  } catch (e) {
    error.textContent = `Could not reach the replica: ${e.message}`;
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  login({ token: document.getElementById('token').value.trim() });
});

// A client certificate is only presented over TLS (--admin-tls on).
if (location.protocol === 'https:') {
  document.getElementById('with-certificate').hidden = false;
  document.getElementById('certificate').addEventListener('click', () => login({ certificate: true }));
}
