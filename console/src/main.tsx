// The console's shell: sign in, then the pages a token may use (a tenant's: plans, runs,
// interactions, applets and secrets; the operator's: tenants), routed by the URL's fragment.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { SIGNED_OUT } from "./api/client";
import { session, type Role } from "./session";
import { href, useRoute } from "./route";
import { forgetApplets } from "./applets";
import { SignIn } from "./pages/SignIn";
import { Plans } from "./pages/Plans";
import { Plan } from "./pages/Plan";
import { PlanEditor } from "./pages/PlanEditor";
import { Runs } from "./pages/Runs";
import { Run } from "./pages/Run";
import { Operator } from "./pages/Operator";
import { Tenant } from "./pages/Tenant";
import { Usage } from "./pages/Usage";
import { Interaction } from "./pages/Interaction";
import { Interactions } from "./pages/Interactions";
import { Applets } from "./pages/Applets";
import { Applet } from "./pages/Applet";
import { Secrets } from "./pages/Secrets";
import "./style.css";

function App() {
  const [role, setRole] = useState<Role | null>(session.role());
  const [why, setWhy] = useState<string | null>(null);
  const route = useRoute();
  useEffect(() => {
    const on = (e: Event) => {
      setWhy(`Signed out: ${(e as CustomEvent<string>).detail}`);
      setRole(null);
    };
    addEventListener(SIGNED_OUT, on);
    return () => removeEventListener(SIGNED_OUT, on);
  }, []);
  if (!role || !session.token()) {
    return <SignIn why={why} onSignedIn={(r) => {
      setWhy(null);
      setRole(r);
      location.hash = r === "operator" ? "#/operator" : "#/runs";
    }} />;
  }
  const signOut = () => {
    session.clear();
    forgetApplets();
    setRole(null);
    location.hash = "#/";
  };
  const [first, second, third] = route.path;
  let page;
  if (role === "operator") {
    const tenant = first === "operator" && second === "tenants" ? route.path[2] : undefined;
    page = tenant ? <Tenant tenant={tenant} /> : <Operator />;
  } else if (first === "usage") {
    page = <Usage route={route} />;
  } else if (first === "new-plan") {
    page = <PlanEditor name={null} />;
  } else if (first === "plans" && second && third === "edit") {
    page = <PlanEditor name={second} />;
  } else if (first === "plans" && second) {
    const v = Number(route.query.get("version"));
    page = <Plan name={second} version={Number.isInteger(v) && v > 0 ? v : null} />;
  } else if (first === "plans") {
    page = <Plans />;
  } else if (first === "interactions" && second) {
    page = <Interaction id={second} />;
  } else if (first === "interactions") {
    page = <Interactions route={route} />;
  } else if (first === "applets" && second) {
    page = <Applet name={second} />;
  } else if (first === "applets") {
    page = <Applets />;
  } else if (first === "secrets") {
    page = <Secrets />;
  } else if (first === "runs" && second) {
    page = <Run id={second} />;
  } else {
    page = <Runs route={route} />;
  }
  const nav = role === "operator" ? [["operator", "Tenants"]] : [["runs", "Runs"], ["interactions", "Interactions"], ["plans", "Plans"], ["applets", "Applets"], ["secrets", "Secrets"], ["usage", "Usage"]];
  return (
    <>
      <button type="button" class="skip" onClick={() => document.getElementById("main")?.focus()}>
        Skip to content
      </button>
      <header class="top">
        <span class="brand">coda</span>
        <nav aria-label="Console">
          {nav.map(([path, label]) => (
            <a key={path} href={href([path!])} aria-current={first === path ? "page" : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <span class="who">{role === "operator" ? "operator" : "tenant"}</span>
        <button type="button" class="signout" onClick={signOut}>Sign out</button>
      </header>
      <main id="main" tabIndex={-1}>{page}</main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
